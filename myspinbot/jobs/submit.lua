-- Scripts of the gateway's side of jobs, one per section.

--#user_load
-- Shared by submit and retry (prepended to them): how many of a member's jobs are
-- waiting and how many are unfinished, from the member's job set (keys.user_jobs).
-- Finished jobs are dropped from the set here. A job whose hash is missing is counted
-- as waiting (its `created` event is not applied yet) unless it was submitted longer ago
-- than a finished job's hash lives (`grace`): then its hash expired and it is finished.
-- The job hashes are read by key prefix rather than declared in KEYS: the set names
-- them, and this Redis is a single instance (no cluster slots to respect).
local function user_load(user_key, job_prefix, now, grace)
  local waiting, active = 0, 0
  local entries = redis.call("ZRANGE", user_key, 0, -1, "WITHSCORES")
  for i = 1, #entries, 2 do
    local id, since = entries[i], tonumber(entries[i + 1])
    local st = redis.call("HGET", job_prefix .. id, "state")
    if st == "completed" or st == "failed" or st == "cancelled"
      or (not st and now - since > grace) then
      redis.call("ZREM", user_key, id)
    else
      active = active + 1
      if (not st) or st == "queued" then waiting = waiting + 1 end
    end
  end
  return waiting, active
end

-- {"user_busy", "queued"|"active", count} when one more job would pass a limit, else nil.
-- ARGV (from `first`): max waiting, max unfinished, now, job hash prefix, grace s
local function user_limit(user_key, first)
  if user_key == "" then return nil end
  local max_waiting, max_active = tonumber(ARGV[first]), tonumber(ARGV[first + 1])
  local waiting, active = user_load(
    user_key, ARGV[first + 3], tonumber(ARGV[first + 2]), tonumber(ARGV[first + 4]))
  if waiting >= max_waiting then return {"user_busy", "queued", tostring(waiting)} end
  if active >= max_active then return {"user_busy", "active", tostring(active)} end
  return nil
end

--#submit
-- Accept a job in one atomic step: bind the Idempotency-Key, check the backlog and
-- the member's own limits, append the `created` event and the job message. Runs after
-- the inputs are stored, so a key never points at a job that was not queued.
--
-- KEYS: 1 idempotency key ("" for none), 2 events stream, 3 job stream, 4 pending submits,
--       5 the member's job set ("" when no per-user limit applies)
-- ARGV: 1 job id, 2 request hash, 3 key TTL s, 4 created event JSON, 5 job message body,
--       6 backlog limit, 7.. per-user limits (see user_limit)
-- Returns {"queued", job id} | {"existing", job id} | {"conflict", job id}
--       | {"busy", backlog depth} | {"user_busy", which limit, count}

local idem, events_key, jobs_key, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local user_key = KEYS[5]
local job_id, hash = ARGV[1], ARGV[2]

if idem ~= "" then
  local prev = redis.call("GET", idem)
  if prev then
    local prev_id, prev_hash = string.match(prev, "^(%S+) (%S+)$")
    if prev_hash == hash then return {"existing", prev_id} end
    return {"conflict", prev_id}
  end
end

-- Backlog: what the job's consumer group has not finished (undelivered + pending).
-- Redis 7 reports the group's lag; Redis 6.2 (the embedded one) does not, and then the
-- stream length stands in: the runtime trims acknowledged entries every second, so it
-- overcounts by at most what finished in the last second.
local depth = 0
if redis.call("EXISTS", jobs_key) == 1 then
  local groups = redis.call("XINFO", "GROUPS", jobs_key)
  if #groups == 0 then
    depth = redis.call("XLEN", jobs_key)
  end
  for _, g in ipairs(groups) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local lag = info["lag"]
    if type(lag) == "number" then
      depth = math.max(depth, lag + tonumber(info["pending"]))
    else
      depth = math.max(depth, redis.call("XLEN", jobs_key))
    end
  end
end
if depth >= tonumber(ARGV[6]) then return {"busy", tostring(depth)} end
local over = user_limit(user_key, 7)
if over then return over end

redis.call("XADD", events_key, "*", "body", ARGV[4])
redis.call("XADD", jobs_key, "*", "body", ARGV[5], "attempt", "1")
redis.call("ZREM", pending_key, job_id)
if user_key ~= "" then redis.call("ZADD", user_key, ARGV[9], job_id) end
if idem ~= "" then
  redis.call("SET", idem, job_id .. " " .. hash, "EX", ARGV[3])
end
return {"queued", job_id}

--#retry
-- Start a failed job again, with its stored inputs and a higher attempt: a `created`
-- event (apply.lua lets it restart a finished job only with a higher attempt), the job
-- message, and its dead letter removed, in one step.
-- A retried job counts against its member's limits like a new one.
-- KEYS: 1 job hash, 2 events stream, 3 job stream, 4 dead-letter stream,
--       5 the member's job set ("" when no per-user limit applies)
-- ARGV: 1 created event JSON, 2 job message body (it carries the new attempt number; the
--       runtime counts this round's deliveries from 1), 3 dead-letter entry id or "",
--       4.. per-user limits (see user_limit)
-- Returns {"queued"} | {"not_failed", state} | {"user_busy", which limit, count}
local state = redis.call("HGET", KEYS[1], "state")
if state and state ~= "failed" then return {"not_failed", state} end
local over = user_limit(KEYS[5], 4)
if over then return over end
if KEYS[5] ~= "" then
  -- The job id is the job hash's key without the prefix (ARGV[7]).
  redis.call("ZADD", KEYS[5], ARGV[6], string.sub(KEYS[1], #ARGV[7] + 1))
end
redis.call("XADD", KEYS[2], "*", "body", ARGV[1])
redis.call("XADD", KEYS[3], "*", "body", ARGV[2], "attempt", "1")
if ARGV[3] ~= "" then redis.call("XDEL", KEYS[4], ARGV[3]) end
return {"queued"}
