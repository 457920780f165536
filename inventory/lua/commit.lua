-- commit: a held claim becomes sold. Idempotent.
-- KEYS[1] stock  KEYS[2] sold  KEYS[3] holds  KEYS[4] hold_expiry  KEYS[5] customers  KEYS[6] committed
-- ARGV[1] claim id  ARGV[2] shopper id  ARGV[3] units
-- Returns 1 COMMITTED, 2 ALREADY_COMMITTED, 3 RETAKEN (the hold had been swept; units taken again
--   from stock), 4 LOST (the hold had been swept and the stock is gone: the caller must undo the sale)
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 1 then
  return 2
end
local units = tonumber(ARGV[3])
if redis.call('HDEL', KEYS[3], ARGV[1]) == 1 then
  redis.call('ZREM', KEYS[4], ARGV[1])
  redis.call('INCRBY', KEYS[2], units)
  redis.call('SADD', KEYS[6], ARGV[1])
  return 1
end
local stock = tonumber(redis.call('GET', KEYS[1]) or '0')
if stock < units then
  return 4
end
redis.call('DECRBY', KEYS[1], units)
redis.call('HINCRBY', KEYS[5], ARGV[2], units)
redis.call('INCRBY', KEYS[2], units)
redis.call('SADD', KEYS[6], ARGV[1])
return 3
