-- tick: admit shoppers at the drop's rate, exactly once however many tickers run, only once their card hold
-- is placed; expire admissions whose checkout window has passed.
-- KEYS[1] tick  KEYS[2] serving  KEYS[3] last_ticket  KEYS[4] tickets  KEYS[5] admitted  KEYS[6] outcome
-- KEYS[7] stock (inventory)  KEYS[8] holds (hash shopper -> hold state)  KEYS[9] deferred (zset shopper -> ticket)
-- ARGV[1] rate per second (0 while paused: the clock moves, nobody is admitted)
-- ARGV[2] checkout window in ms  ARGV[3] cap multiple (admitted and unfinished <= multiple x free stock)
-- ARGV[4] now in ms ('' = the Redis clock)  ARGV[5] most shoppers admitted in one call
-- Hold states: 's' card given, hold not placed yet; 'p:<ms>' being placed since; 'r' placed (ready);
--   'f:<ms>:<code>' payment required since (declined, or 3-D Secure waiting for the shopper).
-- Walking from serving + 1: a ready ticket is admitted; a ticket whose hold is being placed or needs payment
-- keeps its place (deferred: admitted first once ready); a ticket whose hold is not placed yet stops the walk
-- (holds are placed in ticket order, at the payment provider's pace); a ticket with no card passes.
-- A deferred shopper whose payment has been required for a whole checkout window passes their turn.
-- Returns {serving before, serving after, active admitted, measured rate x1000, expired or passed shopper ids...,
--   '|', admitted shopper id, its ticket, ...}
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rate = tonumber(ARGV[1])
local window = tonumber(ARGV[2])

local expired = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, shopper in ipairs(expired) do
  redis.call('ZREM', KEYS[5], shopper)
  redis.call('HSET', KEYS[6], shopper, 'expired')
end

local last = tonumber(redis.call('HGET', KEYS[1], 'last') or now)
local carry = tonumber(redis.call('HGET', KEYS[1], 'carry') or '0')
local measured = tonumber(redis.call('HGET', KEYS[1], 'rate') or '0')
if now < last then
  now = last  -- a ticker with a slow clock must not move time backwards
end
local elapsed = now - last
local serving = tonumber(redis.call('GET', KEYS[2]) or '0')
local last_ticket = tonumber(redis.call('GET', KEYS[3]) or '0')
local active = redis.call('ZCARD', KEYS[5])
local free = tonumber(redis.call('GET', KEYS[7]) or '0')

local due = rate * elapsed / 1000 + carry
local want = math.floor(due)
local room = tonumber(ARGV[3]) * free - active
local budget = math.min(want, tonumber(ARGV[5]))
if room < budget then
  budget = room
end
if budget < 0 then
  budget = 0
end

local admitted = {}
local tickets = {}
local function admit(shopper, ticket)
  redis.call('ZADD', KEYS[5], now + window, shopper)
  admitted[#admitted + 1] = shopper
  tickets[#tickets + 1] = ticket
end

-- Deferred shoppers first: they kept their place. Those whose payment stayed required too long pass.
local deferred = redis.call('ZRANGE', KEYS[9], 0, -1, 'WITHSCORES')
for i = 1, #deferred, 2 do
  local shopper = deferred[i]
  local state = redis.call('HGET', KEYS[8], shopper)
  if state == 'r' then
    if #admitted < budget then
      redis.call('ZREM', KEYS[9], shopper)
      admit(shopper, tonumber(deferred[i + 1]))
    end
  elseif not state or (string.sub(state, 1, 2) == 'f:'
      and now - tonumber(string.match(state, '^f:(%d+)')) >= window) then
    redis.call('ZREM', KEYS[9], shopper)
    redis.call('HSET', KEYS[6], shopper, 'passed')
    expired[#expired + 1] = shopper
  end
end

local pointer = serving
while #admitted < budget and pointer < last_ticket do
  local ticket = pointer + 1
  local shopper = redis.call('HGET', KEYS[4], ticket)
  if shopper then
    local state = redis.call('HGET', KEYS[8], shopper)
    if state == 's' then
      break  -- its hold is next to be placed: admission waits for it, in ticket order
    end
    if state == 'r' then
      admit(shopper, ticket)
    elseif state then
      redis.call('ZADD', KEYS[9], ticket, shopper)
    else
      redis.call('HSET', KEYS[6], shopper, 'passed')  -- no card any more
      expired[#expired + 1] = shopper
    end
  end
  pointer = ticket
end
if pointer > serving then
  redis.call('SET', KEYS[2], pointer)
end
if #admitted == want then
  carry = due - want  -- keep the fraction so the long-run rate is exact
else
  carry = 0  -- held back by the queue, the holds, the cap or the stock: no backlog builds up
end
if elapsed > 0 then
  -- exponentially weighted admissions per second, over roughly the last five seconds
  local weight = math.min(1, elapsed / 5000)
  measured = measured + weight * (#admitted * 1000 / elapsed - measured)
end
redis.call('HSET', KEYS[1], 'last', now, 'carry', tostring(carry), 'rate', tostring(measured))

local result = {serving, pointer, active + #admitted, math.floor(measured * 1000)}
for _, shopper in ipairs(expired) do
  result[#result + 1] = shopper
end
result[#result + 1] = '|'
for i, shopper in ipairs(admitted) do
  result[#result + 1] = shopper
  result[#result + 1] = tickets[i]
end
return result
