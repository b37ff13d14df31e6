-- Scripts of the redis-stream trigger, one per section (a line starting with the marker below + name).

--#heartbeat
-- Renew (reset the idle time of) the given entries, but only those this consumer
-- still owns: a plain XCLAIM would steal an entry another replica has reclaimed.
-- KEYS[1] stream; ARGV: group, consumer, ids...
local kept = {}
for i = 3, #ARGV do
  local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call("XCLAIM", KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], "JUSTID")
    kept[#kept + 1] = ARGV[i]
  end
end
return kept

--#move_due
-- Put retries whose backoff has passed back on the stream, atomically, so two
-- replicas running this at once never requeue the same entry twice.
-- KEYS[1] delayed zset, KEYS[2] stream; ARGV: now, limit, stream cap
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call("ZREM", KEYS[1], member)
  local m = cjson.decode(member)
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[3], "*", "body", m.body, "attempt", m.attempt)
end
return #due
