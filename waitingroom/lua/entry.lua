-- entry: everything one shopper's queue entry needs, in one round trip.
-- KEYS[1] entries  KEYS[2] serving  KEYS[3] admitted  KEYS[4] outcome  KEYS[5] tick  KEYS[6] last_ticket
-- KEYS[7] stock (inventory)  KEYS[8] holds (inventory)  KEYS[9] card holds' states  KEYS[10] deferred
-- ARGV[1] shopper id
-- Returns {ticket (-2 = not in the queue, -1 = parked), serving, length, admission expiry ms (0 = none), outcome or '',
--   measured rate x1000, last ticket, free stock (-1 when not armed), number of holds, hold state or '',
--   1 when admission passed the ticket while its hold was not ready (deferred) else 0}
local ticket = redis.call('HGET', KEYS[1], ARGV[1])
local serving = tonumber(redis.call('GET', KEYS[2]) or '0')
local length = redis.call('HLEN', KEYS[1])
local rate = math.floor(tonumber(redis.call('HGET', KEYS[5], 'rate') or '0') * 1000)
local last_ticket = tonumber(redis.call('GET', KEYS[6]) or '0')
local stock = tonumber(redis.call('GET', KEYS[7]) or '-1')
local holds = redis.call('HLEN', KEYS[8])
if not ticket then
  return {-2, serving, length, 0, '', rate, last_ticket, stock, holds, '', 0}
end
local expires = redis.call('ZSCORE', KEYS[3], ARGV[1])
local outcome = redis.call('HGET', KEYS[4], ARGV[1]) or ''
local hold = redis.call('HGET', KEYS[9], ARGV[1]) or ''
local deferred = redis.call('ZSCORE', KEYS[10], ARGV[1]) and 1 or 0
return {tonumber(ticket), serving, length, math.floor(tonumber(expires or '0')), outcome, rate, last_ticket, stock,
  holds, hold, deferred}
