-- Releases a lease if the caller still holds it (a lock's release, a leader's resignation).
-- KEYS: 1 lease   ARGV: 1 holder token
-- Returns 1 if released, 0 if it had already expired or is someone else's.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
