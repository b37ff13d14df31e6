-- Scripts of the redis-stream trigger, one per section (a line starting with the marker below + name).

--#heartbeat
-- Renew (reset the idle time of) the given entries, but only those this consumer
-- still owns: a plain XCLAIM would steal an entry another replica has reclaimed.
-- JUSTID: a renewal is not a delivery, so the delivery count (part of the lease) stays.
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
-- replicas running this at once never requeue the same entry twice. A retry keeps
-- the id of the entry it first came from (`origin`): its identity across retries.
-- KEYS[1] delayed zset, KEYS[2] stream; ARGV: now, limit
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call("ZREM", KEYS[1], member)
  local m = cjson.decode(member)
  redis.call("XADD", KEYS[2], "*", "body", m.body, "attempt", m.attempt, "origin", m.origin or m.from)
end
return #due

--#settle
-- Write on behalf of a delivery only while its lease holds: the entry is pending,
-- owned by this consumer, with the delivery count it was handed over with. Another
-- replica that reclaimed it changed both, so a paused replica's late writes are
-- refused here, in the same atomic step as the writes themselves.
-- KEYS[1] stream, KEYS[2..] keys the writes name (by index)
-- ARGV: group, consumer, id, deliveries, writes (JSON list of
--   {"xadd", key index, {field, value, ...}} | {"zadd", key index, score, member}
--   | {"xack"} | {"exists", key index})
-- Returns {1 if held else 0, one 0/1 per "exists"}; nothing is written unless held.
local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
local held = p[1] ~= nil and p[1][2] == ARGV[2] and tonumber(p[1][4]) == tonumber(ARGV[4])
local out = {held and 1 or 0}
for _, op in ipairs(cjson.decode(ARGV[5])) do
  local what = op[1]
  if what == "exists" then
    out[#out + 1] = redis.call("EXISTS", KEYS[op[2]])
  elseif held then
    if what == "xadd" then
      redis.call("XADD", KEYS[op[2]], "*", unpack(op[3]))
    elseif what == "zadd" then
      redis.call("ZADD", KEYS[op[2]], op[3], op[4])
    elseif what == "xack" then
      redis.call("XACK", KEYS[1], ARGV[1], ARGV[3])
    end
  end
end
return out

--#ack
-- Acknowledge the entries whose lease this consumer still holds. Returns how many were
-- taken over by another delivery (their ack is refused); an entry no longer pending was
-- settled already (a job's final event acks it) and is not counted.
-- KEYS[1] stream; ARGV: group, consumer, then id, deliveries pairs
local taken = 0
for i = 3, #ARGV, 2 do
  local p = redis.call("XPENDING", KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] then
    if p[1][2] == ARGV[2] and tonumber(p[1][4]) == tonumber(ARGV[i + 1]) then
      redis.call("XACK", KEYS[1], ARGV[1], ARGV[i])
    else
      taken = taken + 1
    end
  end
end
return taken

--#trim_acked
-- Drop only what every consumer group has acknowledged: entries older than each
-- group's oldest pending entry and its last-delivered id. Undelivered or pending
-- entries are never trimmed. A stream nobody consumes yet is left alone.
-- KEYS[1] stream. Returns the number of entries removed.
local function older(a, b)
  local ams, aseq = string.match(a, "^(%d+)-(%d+)$")
  local bms, bseq = string.match(b, "^(%d+)-(%d+)$")
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  if ams ~= bms then return ams < bms end
  return aseq < bseq
end
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local groups = redis.call("XINFO", "GROUPS", KEYS[1])
if #groups == 0 then return 0 end
local minid = nil
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local bound = info["last-delivered-id"]
  if tonumber(info["pending"]) > 0 then
    local first = redis.call("XPENDING", KEYS[1], info["name"], "-", "+", 1)
    if first[1] and older(first[1][1], bound) then bound = first[1][1] end
  end
  if minid == nil or older(bound, minid) then minid = bound end
end
if minid == "0-0" then return 0 end
-- Exact, not "~": the stream length is what the backlog limit reads on Redis 6.2.
return redis.call("XTRIM", KEYS[1], "MINID", minid)
