-- rebuild: replace a drop's Redis inventory with the database's truth.
-- KEYS[1] stock  KEYS[2] sold  KEYS[3] holds  KEYS[4] hold_expiry  KEYS[5] customers  KEYS[6] committed
-- KEYS[7] meta
-- ARGV[1] quantity  ARGV[2] units taken in the database (drop.sold: pending and paid)
-- ARGV[3] hold time in ms  ARGV[4] the drop's epoch  ARGV[5] number of paid claims P
-- ARGV[6] number of pending claims H
-- then P paid claim ids, then H triples (claim id, shopper id, units) of pending orders,
-- then (shopper id, units) pairs of every shopper's pending and paid units
-- Returns {stock, sold, held}
for i = 3, 7 do
  redis.call('DEL', KEYS[i])
end
local quantity = tonumber(ARGV[1])
local taken = tonumber(ARGV[2])
local hold_ms = tonumber(ARGV[3])
local paid_n = tonumber(ARGV[5])
local pending_n = tonumber(ARGV[6])
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + hold_ms
local i = 7
for _ = 1, paid_n do
  redis.call('SADD', KEYS[6], ARGV[i])
  i = i + 1
end
local held = 0
for _ = 1, pending_n do
  local units = tonumber(ARGV[i + 2])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1] .. ':' .. units)
  redis.call('ZADD', KEYS[4], expires, ARGV[i])
  held = held + units
  i = i + 3
end
while i < #ARGV do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
local sold = taken - held
redis.call('SET', KEYS[1], quantity - taken)
redis.call('SET', KEYS[2], sold)
redis.call('HSET', KEYS[7], 'quantity', quantity, 'epoch', ARGV[4])
return {quantity - taken, sold, held}
