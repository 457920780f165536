-- arm: load a drop's stock once; an armed (live) counter is never reset.
-- KEYS[1] stock  KEYS[2] sold  KEYS[3] meta
-- ARGV[1] quantity  ARGV[2] units already taken in the database (pending or paid)
-- Returns 1 ARMED, 2 ALREADY_ARMED
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 2
end
local quantity = tonumber(ARGV[1])
local taken = tonumber(ARGV[2])
redis.call('SET', KEYS[1], quantity - taken)
redis.call('SET', KEYS[2], taken)
redis.call('HSET', KEYS[3], 'quantity', quantity)
return 1
