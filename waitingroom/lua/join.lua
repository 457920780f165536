-- join: put a shopper in the queue in one round trip: the existing entry, or the pre-queue, or a ticket.
-- KEYS[1] entries  KEYS[2] tickets  KEYS[3] prequeue  KEYS[4] started  KEYS[5] last_ticket  KEYS[6] serving
-- KEYS[7] holds (hash shopper id -> hold state: present once the shopper gave a card)
-- KEYS[8] stock (inventory)  KEYS[9] holds (inventory)
-- KEYS[10] spent proof-of-work marker (its bare prefix, ending in ':', when none is checked)
-- KEYS[11] accounts seen on this device (its bare prefix when no device is known)
--   (a bare prefix rather than '': every key carries the drop's hash tag, so the call stays on one cluster slot)
-- KEYS[12] parked (hash shopper -> reasons)  KEYS[13] blocked counts by reason  KEYS[14] flagged counts by reason
-- KEYS[15] journal (list of "shopper:ticket" not yet saved to the database)
-- ARGV[1] shopper id  ARGV[2] 1 when a card is required (else the entry needs no hold to be admitted)
-- ARGV[3] seconds the marker lives
-- ARGV[4] accounts allowed per device  ARGV[5] 1 to park the entry (never admitted)
-- ARGV[6] the reasons, comma-separated, counted when the entry is parked  ARGV[7] 1 when the drop is armed
-- Returns {code, ticket, serving, length}: 1 TICKETED, 2 PREQUEUED, 3 EXISTING, 4 AUTHORIZATION_REQUIRED,
--   5 SOLD_OUT, 6 POW_REPLAYED, 7 DEVICE_LIMIT, 8 PARKED, 10 UNAVAILABLE (the drop's Redis state is missing)
-- (Accounts per card are counted when the hold is placed: the card's fingerprint is known only then.)
local function given(key)
  return key ~= '' and string.sub(key, -1) ~= ':'
end
local pow_key, device_key = given(KEYS[10]), given(KEYS[11])
local serving = tonumber(redis.call('GET', KEYS[6]) or '0')
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  return {3, tonumber(existing), serving, redis.call('HLEN', KEYS[1])}
end
local stock = redis.call('GET', KEYS[8])
if not stock and ARGV[7] == '1' then
  return {10, 0, serving, 0}  -- an armed drop's keys are gone (Redis lost them): no answer would be true
end
if stock and tonumber(stock) <= 0 and redis.call('HLEN', KEYS[9]) == 0 then
  return {5, 0, serving, redis.call('HLEN', KEYS[1])}
end
if ARGV[2] == '1' and redis.call('HEXISTS', KEYS[7], ARGV[1]) == 0 then
  return {4, 0, serving, redis.call('HLEN', KEYS[1])}
end
if device_key and redis.call('SISMEMBER', KEYS[11], ARGV[1]) == 0
    and redis.call('SCARD', KEYS[11]) >= tonumber(ARGV[4]) then
  redis.call('HINCRBY', KEYS[13], 'device_limit', 1)
  return {7, 0, serving, redis.call('HLEN', KEYS[1])}
end
if pow_key and not redis.call('SET', KEYS[10], ARGV[1], 'NX', 'EX', tonumber(ARGV[3])) then
  return {6, 0, serving, redis.call('HLEN', KEYS[1])}
end
if device_key then
  redis.call('SADD', KEYS[11], ARGV[1])
end
if ARGV[2] ~= '1' then
  redis.call('HSETNX', KEYS[7], ARGV[1], 'r')  -- no card required: admitted as if its hold were placed
end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], -1)
  redis.call('RPUSH', KEYS[15], ARGV[1] .. ':-1')
  redis.call('HSET', KEYS[12], ARGV[1], ARGV[6])
  for reason in string.gmatch(ARGV[6], '[^,]+') do
    redis.call('HINCRBY', KEYS[14], reason, 1)
  end
  return {8, -1, serving, redis.call('HLEN', KEYS[1])}
end
if redis.call('EXISTS', KEYS[4]) == 1 then
  local ticket = redis.call('INCR', KEYS[5])
  redis.call('HSET', KEYS[1], ARGV[1], ticket)
  redis.call('HSET', KEYS[2], ticket, ARGV[1])
  redis.call('RPUSH', KEYS[15], ARGV[1] .. ':' .. ticket)
  return {1, ticket, serving, redis.call('HLEN', KEYS[1])}
end
redis.call('RPUSH', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], 0)
redis.call('RPUSH', KEYS[15], ARGV[1] .. ':0')
return {2, 0, serving, redis.call('HLEN', KEYS[1])}
