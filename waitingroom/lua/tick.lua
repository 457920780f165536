-- tick: admit shoppers at the drop's rate, exactly once however many tickers run, and expire
-- admissions whose checkout window has passed.
-- KEYS[1] tick  KEYS[2] serving  KEYS[3] last_ticket  KEYS[4] tickets  KEYS[5] admitted  KEYS[6] outcome
-- KEYS[7] stock (inventory)
-- ARGV[1] rate per second (0 while paused: the clock moves, nobody is admitted)
-- ARGV[2] checkout window in ms  ARGV[3] cap multiple (admitted and unfinished <= multiple x free stock)
-- ARGV[4] now in ms ('' = the Redis clock)  ARGV[5] most shoppers admitted in one call
-- Returns {serving before, serving after, active admitted, measured rate x1000, expired shopper ids...,
--   '|', admitted shopper ids...}
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
local admit = math.min(want, last_ticket - serving, tonumber(ARGV[5]))
if room < admit then
  admit = room
end
if admit < 0 then
  admit = 0
end
if admit == want then
  carry = due - want  -- keep the fraction so the long-run rate is exact
else
  carry = 0  -- held back by the queue's end, the cap or the stock: no backlog builds up
end

local admitted = {}
for ticket = serving + 1, serving + admit do
  local shopper = redis.call('HGET', KEYS[4], ticket)
  if shopper then
    redis.call('ZADD', KEYS[5], now + window, shopper)
    admitted[#admitted + 1] = shopper
  end
end
if admit > 0 then
  redis.call('SET', KEYS[2], serving + admit)
end
if elapsed > 0 then
  -- exponentially weighted admissions per second, over roughly the last five seconds
  local weight = math.min(1, elapsed / 5000)
  measured = measured + weight * (admit * 1000 / elapsed - measured)
end
redis.call('HSET', KEYS[1], 'last', now, 'carry', tostring(carry), 'rate', tostring(measured))

local result = {serving, serving + admit, active + #admitted, math.floor(measured * 1000)}
for _, shopper in ipairs(expired) do
  result[#result + 1] = shopper
end
result[#result + 1] = '|'
for _, shopper in ipairs(admitted) do
  result[#result + 1] = shopper
end
return result
