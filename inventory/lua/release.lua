-- release: a held claim goes back to stock. Idempotent: an unknown or spent claim changes nothing.
-- KEYS[1] stock  KEYS[2] holds  KEYS[3] hold_expiry  KEYS[4] customers
-- ARGV[1] claim id
-- Returns 1 RELEASED, 2 NOT_HELD
local hold = redis.call('HGET', KEYS[2], ARGV[1])
if not hold then
  return 2
end
local sep = string.find(hold, ':', 1, true)
local shopper = string.sub(hold, 1, sep - 1)
local units = tonumber(string.sub(hold, sep + 1))
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('INCRBY', KEYS[1], units)
if redis.call('HINCRBY', KEYS[4], shopper, -units) <= 0 then
  redis.call('HDEL', KEYS[4], shopper)
end
return 1
