-- start: give the whole pre-queue its tickets 1..M in the order drawn by the caller, in one atomic step.
-- KEYS[1] entries  KEYS[2] tickets  KEYS[3] prequeue  KEYS[4] started  KEYS[5] last_ticket  KEYS[6] journal
-- ARGV: the pre-queued shopper ids in their drawn order (a cryptographically secure permutation)
-- Returns {code, M}: 1 STARTED, 2 ALREADY_STARTED, 3 CHANGED (the pre-queue grew meanwhile: draw again)
if redis.call('EXISTS', KEYS[4]) == 1 then
  return {2, tonumber(redis.call('GET', KEYS[5]) or '0')}
end
if redis.call('LLEN', KEYS[3]) ~= #ARGV then
  return {3, redis.call('LLEN', KEYS[3])}
end
for ticket, shopper in ipairs(ARGV) do
  redis.call('HSET', KEYS[1], shopper, ticket)
  redis.call('HSET', KEYS[2], ticket, shopper)
  redis.call('RPUSH', KEYS[6], shopper .. ':' .. ticket)
end
redis.call('SET', KEYS[5], #ARGV)
redis.call('SET', KEYS[4], 1)
redis.call('DEL', KEYS[3])
return {1, #ARGV}
