-- Takes a lease (a lock, or a leader lease) if it is free, with a fencing token that only grows.
-- The token is the larger of the last one + 1 and Redis TIME in microseconds, so it keeps
-- growing even after the counter expired or Redis lost its data (PostgreSQL remembers the
-- newest token it accepted and refuses older ones).
--
-- KEYS: 1 lease   2 fencing counter
-- ARGV: 1 holder token   2 lease ttl ms   3 counter ttl ms
-- Returns {1, fencing token} or {0, ms until the current holder's lease ends}
local held = redis.call('PTTL', KEYS[1])
if held ~= -2 then
  return {0, held}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('GET', KEYS[2]) or 0)
local fence = math.max(last + 1, now)
redis.call('SET', KEYS[2], string.format('%.0f', fence), 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, fence}
