-- ratelimit: count one request against several fixed windows in one call.
-- KEYS: one counter per limit (the caller puts the window's start in the key name)
-- ARGV: for each key, its limit then its window length in seconds
-- Returns {index of the first limit exceeded (0 = none), seconds left in that window}
local over, wait = 0, 0
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local period = tonumber(ARGV[2 * i])
  if count == 1 then
    redis.call('EXPIRE', key, period + 1)
  end
  if over == 0 and count > tonumber(ARGV[2 * i - 1]) then
    over = i
    wait = redis.call('TTL', key)
  end
end
return {over, wait}
