-- Ends handling one update: compare-and-set the conversation record on its version and the
-- chat lease's token, release the lease, and mark the update done.
-- A handler whose lease ran out (a frozen process, a handler past its longest hold) still
-- commits when nobody touched the chat since: nobody holds the lease, the update is still its
-- own (or its marker expired with the lease), and the record is at the version it read. Its
-- replies went out; throwing its state away left the user at a step the conversation did not
-- hold. Refused otherwise, in two ways:
--   'lease_lost': the update is done, or taken by another delivery of it: delivered again, it is
--     a duplicate, or waits for that handler;
--   'conflict': the chat moved on without it (another update holds the lease, or changed the
--     record; a record that is gone is no move): run again it would come out of order, so it is
--     not delivered again.
-- (A commit that kept the record as it was leaves its version: the late commit then lands on the
-- state both read.)
--
-- KEYS: 1 fsm record   2 chat lease   3 update marker
-- ARGV: 1 lease token   2 expected version   3 mode: 'set' | 'clear' | 'keep' | 'retry'
--       4 data (for 'set')   5 fsm ttl ms   6 done ttl ms
-- 'retry': the handler could not handle the update now; the record stays as it was and the
-- update is forgotten, so that its redelivery is handled.
-- Returns 'ok' | 'lease_lost' | 'conflict'
local holder = redis.call('GET', KEYS[2])
if holder ~= ARGV[1] then
  local marker = redis.call('GET', KEYS[3])
  if marker and marker ~= 'p:' .. ARGV[1] then
    return 'lease_lost'
  end
  -- A record that is gone (Redis lost it with the lease and the marker) is no move of the chat:
  -- as below, the handler's state is the best there is.
  local stored = tonumber(redis.call('HGET', KEYS[1], 'v') or 0)
  if holder or (stored ~= tonumber(ARGV[2]) and stored ~= 0) then
    return 'conflict'
  end
end
redis.call('DEL', KEYS[2])
if ARGV[3] == 'retry' then
  redis.call('DEL', KEYS[3])
  return 'ok'
end
redis.call('SET', KEYS[3], 'done', 'PX', ARGV[6])
local version = tonumber(redis.call('HGET', KEYS[1], 'v') or 0)
if ARGV[3] == 'keep' then
  -- An active conversation stays alive: every update refreshes its TTL.
  if version > 0 then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  end
  return 'ok'
end
-- A record changed by someone else is a conflict. A record that is gone (its TTL ran out, or
-- Redis lost it) is not: the handler's state is the best there is, so it is written on top of
-- the version it read, and the version keeps growing.
local expected = tonumber(ARGV[2])
if version ~= expected and version ~= 0 then
  return 'conflict'
end
version = math.max(version, expected)
-- The version only grows, clearing included, so the record's history stays linear.
if ARGV[3] == 'set' then
  redis.call('HSET', KEYS[1], 'v', version + 1, 'd', ARGV[4])
else
  redis.call('HSET', KEYS[1], 'v', version + 1)
  redis.call('HDEL', KEYS[1], 'd')
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 'ok'
