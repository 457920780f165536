-- release: a merchandiser lets a parked shopper into the real queue, at its end.
-- KEYS[1] entries  KEYS[2] parked  KEYS[3] started  KEYS[4] last_ticket  KEYS[5] tickets  KEYS[6] prequeue
-- KEYS[7] journal
-- ARGV[1] shopper id
-- Returns {code, ticket}: 1 RELEASED (ticket 0 = back in the pre-queue), 2 NOT_PARKED
if redis.call('HGET', KEYS[1], ARGV[1]) ~= '-1' then
  return {2, 0}
end
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[3]) == 1 then
  local ticket = redis.call('INCR', KEYS[4])
  redis.call('HSET', KEYS[1], ARGV[1], ticket)
  redis.call('HSET', KEYS[5], ticket, ARGV[1])
  redis.call('RPUSH', KEYS[7], ARGV[1] .. ':' .. ticket)
  return {1, ticket}
end
redis.call('RPUSH', KEYS[6], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], 0)
redis.call('RPUSH', KEYS[7], ARGV[1] .. ':0')
return {1, 0}
