-- stripe_bucket: take tokens from the one token bucket shared by every process that calls Stripe.
-- The bucket refills continuously at ARGV[1] tokens per second up to ARGV[2] tokens, so in any
-- one-second window at most ARGV[2] + ARGV[1] tokens are granted (the caller picks both so that the sum
-- is the allowed rate). Time is Redis's own clock, so every process agrees on it.
-- KEYS[1] bucket hash: tokens (float), ts (ms of the last refill)
-- ARGV[1] refill per second (> 0)  ARGV[2] capacity  ARGV[3] tokens wanted (<= capacity)
-- ARGV[4] floor: tokens that must remain after this take (0 for shoppers, 1 for background work)
-- Returns {code, wait_ms}: 1 GRANTED (wait 0); 2 DENIED (ms until the tokens will be there)
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local floor = tonumber(ARGV[4])
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now_ms
end
if now_ms > ts then
  tokens = math.min(capacity, tokens + (now_ms - ts) * rate / 1000)
  ts = now_ms
end
local code = 2
local wait_ms = 0
if tokens >= wanted + floor then
  tokens = tokens - wanted
  code = 1
else
  wait_ms = math.ceil((wanted + floor - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', ts)
-- An idle bucket is full again after capacity / rate seconds; keep it a little longer than that.
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 60000)
return {code, wait_ms}
