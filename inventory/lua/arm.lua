-- arm: load a drop's stock once; an armed (live) counter is never reset.
-- KEYS[1] stock  KEYS[2] sold  KEYS[3] meta
-- ARGV[1] quantity  ARGV[2] units already taken in the database (pending or paid)
-- ARGV[3] the drop's epoch (its creation time): tells this drop's keys from those of an older drop
--   that had the same id, for example before the database was recreated
-- Returns 1 ARMED, 2 ALREADY_ARMED, 3 FOREIGN (the keys belong to another drop: wipe them, then arm)
if redis.call('EXISTS', KEYS[1]) == 1 then
  local epoch = redis.call('HGET', KEYS[3], 'epoch')
  if epoch and epoch ~= ARGV[3] then
    return 3
  end
  return 2
end
local quantity = tonumber(ARGV[1])
local taken = tonumber(ARGV[2])
redis.call('SET', KEYS[1], quantity - taken)
redis.call('SET', KEYS[2], taken)
redis.call('HSET', KEYS[3], 'quantity', quantity, 'epoch', ARGV[3])
return 1
