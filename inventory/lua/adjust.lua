-- adjust: move an armed drop's stock by the change in its quantity, atomically.
-- KEYS[1] stock  KEYS[2] meta
-- ARGV[1] new quantity
-- Returns {code, stock}: 1 ADJUSTED, 2 NOT_ARMED, 3 BELOW_TAKEN (would leave fewer units than sold + held)
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {2, 0}
end
local new_quantity = tonumber(ARGV[1])
local old_quantity = tonumber(redis.call('HGET', KEYS[2], 'quantity') or new_quantity)
local stock = tonumber(redis.call('GET', KEYS[1]))
local delta = new_quantity - old_quantity
if stock + delta < 0 then
  return {3, stock}
end
redis.call('HSET', KEYS[2], 'quantity', new_quantity)
return {1, redis.call('INCRBY', KEYS[1], delta)}
