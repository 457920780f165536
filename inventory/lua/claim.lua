-- claim: take units for one shopper in one atomic call and hold them until they expire.
-- KEYS[1] stock  KEYS[2] holds  KEYS[3] hold_expiry  KEYS[4] customers
-- ARGV[1] claim id (random, from the caller)  ARGV[2] shopper id  ARGV[3] units
-- ARGV[4] per-customer limit  ARGV[5] hold time in ms
-- Returns {code, stock after}: 1 CLAIMED, 2 SOLD_OUT, 3 LIMIT_REACHED, 4 INSUFFICIENT, 5 NOT_ARMED,
--   6 DUPLICATE_CLAIM
local stock = redis.call('GET', KEYS[1])
if not stock then
  return {5, 0}
end
stock = tonumber(stock)
local units = tonumber(ARGV[3])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {6, stock}
end
local mine = tonumber(redis.call('HGET', KEYS[4], ARGV[2]) or '0')
if mine + units > tonumber(ARGV[4]) then
  return {3, stock}
end
if stock <= 0 then
  return {2, stock}
end
if stock < units then
  return {4, stock}
end
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('HINCRBY', KEYS[4], ARGV[2], units)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':' .. units)
redis.call('ZADD', KEYS[3], now_ms + tonumber(ARGV[5]), ARGV[1])
return {1, redis.call('DECRBY', KEYS[1], units)}
