-- sweep: expired holds go back to stock.
-- KEYS[1] stock  KEYS[2] holds  KEYS[3] hold_expiry  KEYS[4] customers
-- ARGV[1] most holds to release in this call
-- Returns the list of released claim ids
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[1]))
local released = {}
for _, claim in ipairs(expired) do
  redis.call('ZREM', KEYS[3], claim)
  local hold = redis.call('HGET', KEYS[2], claim)
  if hold then
    local sep = string.find(hold, ':', 1, true)
    local shopper = string.sub(hold, 1, sep - 1)
    local units = tonumber(string.sub(hold, sep + 1))
    redis.call('HDEL', KEYS[2], claim)
    redis.call('INCRBY', KEYS[1], units)
    if redis.call('HINCRBY', KEYS[4], shopper, -units) <= 0 then
      redis.call('HDEL', KEYS[4], shopper)
    end
    released[#released + 1] = claim
  end
end
return released
