-- Extends a lease if the caller still holds it.
-- KEYS: 1 lease   ARGV: 1 holder token   2 lease ttl ms
-- Returns 1 if extended, 0 if the lease is gone or someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
