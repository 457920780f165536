-- ratelimit prelude: put in front of another script (the lean join path's join and entry calls), so that
-- a request is counted, and refused when over a limit, in the one call that serves it.
-- ARGV[1] number of counters R; KEYS[1..R] the counters (the caller names them with the window's start and
-- the drop's hash tag, so they share the script's slot); ARGV[2..2R+1] a limit and a period per counter.
-- Returns {-429, index of the first limit exceeded} when over, and the script below does not run;
-- otherwise it takes its KEYS and ARGV off the front, so the script below sees only its own.
local limits = tonumber(ARGV[1])
local over = 0
for i = 1, limits do
  local count = redis.call('INCR', KEYS[i])
  if count == 1 then
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[2 * i + 1]) + 1)
  end
  if over == 0 and count > tonumber(ARGV[2 * i]) then
    over = i
  end
end
if over > 0 then
  return {-429, over}
end
for _ = 1, limits do
  table.remove(KEYS, 1)
end
for _ = 1, 2 * limits + 1 do
  table.remove(ARGV, 1)
end
