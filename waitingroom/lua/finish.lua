-- finish: an admitted shopper bought (or gave up): the admission stops counting against the cap.
-- KEYS[1] admitted  KEYS[2] outcome
-- ARGV[1] shopper id  ARGV[2] outcome ("purchased")
-- Returns 1 FINISHED, 2 NOT_ADMITTED
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 or redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  return 1
end
return 2
