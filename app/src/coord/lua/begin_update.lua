-- Begins handling one update of one chat, in one round trip: dedupe by update id, take the
-- chat's lease, check the user's flood limit, and return the conversation record.
-- Time is Redis TIME, never the caller's clock (instances may be skewed).
--
-- KEYS: 1 fsm record (hash v, d)   2 chat lease   3 update marker   4 flood limit (GCRA TAT)
-- ARGV: 1 lease token   2 lease ttl ms   3 done ttl ms
--       4 flood emission interval us   5 flood window us
--       6 '1' when the update is exempt from the flood limit (money received), else '0'
-- Returns {'dup'} | {'taken'} | {'busy', ms until the lease ends} | {'flood', retry ms}
--       | {'ok', fsm version, fsm data or nil}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- Taken before: never handled twice. Done (or dropped for good) is a duplicate; in progress
-- under a lease ('p:<token>') is not settled yet: that handler may still hand it back.
-- In progress under this very token: the caller's first try ran and its reply was lost; it
-- holds the lease, so it proceeds, its lease (and the marker, which lives as long) starting
-- again now, as the caller counts it from this try.
local marker = redis.call('GET', KEYS[3])
if marker then
  if marker == 'p:' .. ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
    redis.call('PEXPIRE', KEYS[3], ARGV[2])
    local record = redis.call('HMGET', KEYS[1], 'v', 'd')
    return {'ok', tonumber(record[1] or 0), record[2]}
  end
  if string.sub(marker, 1, 2) == 'p:' then
    return {'taken'}
  end
  return {'dup'}
end

-- Another handler of this chat is running: the caller retries after it ends.
local held = redis.call('PTTL', KEYS[2])
if held > 0 then
  return {'busy', held}
end

-- Flood limit (GCRA): a burst of window/emission updates, then one per emission interval.
local emission = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[4]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + emission
if new_tat - now > window and ARGV[6] ~= '1' then
  -- Dropped for good: a redelivery of this update is dropped as well.
  redis.call('SET', KEYS[3], 'flood', 'PX', ARGV[3])
  return {'flood', math.ceil((new_tat - now - window) / 1000)}
end
if new_tat - now <= window then
  redis.call('SET', KEYS[4], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
end

-- The marker lives as long as the lease: if this handler dies, the update can be retried.
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], 'p:' .. ARGV[1], 'PX', ARGV[2])
local record = redis.call('HMGET', KEYS[1], 'v', 'd')
return {'ok', tonumber(record[1] or 0), record[2]}
