-- due: the card holds to place next, in ticket order, and the ones waiting on the shopper (to look at again).
-- KEYS[1] tickets  KEYS[2] holds (hash shopper -> hold state)  KEYS[3] deferred (zset shopper -> ticket)
-- KEYS[4] serving  KEYS[5] last_ticket
-- ARGV[1] tickets to look ahead of serving  ARGV[2] now in ms  ARGV[3] ms after which a placing is stale
-- ARGV[4] most holds to return
-- Hold states as in tick.lua. Due: state 's', or 'p:<ms>' older than ARGV[3] (its placer died; placing it
-- again reuses the same idempotency key). Deferred shoppers come first: they already passed the line.
-- Returns {shopper, ticket, ... (due), '|', shopper, ticket, ... (payment required: 'f:...')}
local now, stale, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local due, waiting = {}, {}
local function look(shopper, ticket)
  local state = redis.call('HGET', KEYS[2], shopper)
  if not state then
    return
  end
  local kind = string.sub(state, 1, 1)
  if kind == 's' or (kind == 'p' and now - tonumber(string.sub(state, 3)) >= stale) then
    if #due < 2 * most then
      due[#due + 1] = shopper
      due[#due + 1] = ticket
    end
  elseif kind == 'f' then
    waiting[#waiting + 1] = shopper
    waiting[#waiting + 1] = ticket
  end
end
local deferred = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
for i = 1, #deferred, 2 do
  look(deferred[i], tonumber(deferred[i + 1]))
end
local serving = tonumber(redis.call('GET', KEYS[4]) or '0')
local last = math.min(tonumber(redis.call('GET', KEYS[5]) or '0'), serving + tonumber(ARGV[1]))
for ticket = serving + 1, last do
  local shopper = redis.call('HGET', KEYS[1], ticket)
  if shopper then
    look(shopper, ticket)
  end
end
local result = due
result[#result + 1] = '|'
for _, value in ipairs(waiting) do
  result[#result + 1] = value
end
return result
