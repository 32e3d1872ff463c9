-- Keeps a running handler's hold on its chat: extends the chat lease, and the update's
-- in-progress marker with it, while the caller still holds the lease.
--
-- KEYS: 1 chat lease   2 update marker
-- ARGV: 1 lease token   2 lease ttl ms
-- Returns 1 if extended, 0 if the lease is gone or someone else's (the commit will say so).
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == 'p:' .. ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
