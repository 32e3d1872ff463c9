-- Counts one attempt of a rate-limited action and says whether it is allowed, on Redis TIME
-- (never the caller's clock, which may be skewed between instances).
--
-- KEYS: 1 limit key
-- ARGV: 1 algorithm: 'window' (exact sliding log, a sorted set) | 'gcra' (one timestamp)
--       2 max attempts per window   3 window us   4 the attempt's id (its member in the log)
-- Returns {1, 0} when allowed, {0, retry ms} when refused. Refused attempts are not counted;
-- in the log, an attempt counted already (a retry, the same update again) is allowed again
-- without counting twice, and moves to now: an attempt counts once, when it last ran (an
-- update counted, lost with its instance and handled again 17 s later made a guess then, and
-- the window must hold it from then; swarm seed 5136).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local max = tonumber(ARGV[2])
local window = tonumber(ARGV[3])

if ARGV[1] == 'window' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
  if redis.call('ZSCORE', KEYS[1], ARGV[4]) then
    redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
    return {1, 0}
  end
  if redis.call('ZCARD', KEYS[1]) < max then
    redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
    return {1, 0}
  end
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.ceil((tonumber(oldest[2]) + window - now) / 1000)}
end

local emission = window / max
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + emission
if new_tat - now > window then
  return {0, math.ceil((new_tat - now - window) / 1000)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
