-- Apply one job event to the job's live state, atomically and at most once.
--
-- Called only by ws-relay, the single writer of job state. The event's id on the
-- global events stream (ARGV[1]) becomes its public eventId: it is re-used as the
-- entry id on the per-job stream, so a redelivered event is recognised (its id is
-- not newer than the last applied one) and never reaches a client twice.
-- An event not newer than the last one is a duplicate only if it is on the per-job
-- stream (it was applied); one that never was came late, behind newer events of its
-- job (e.g. its first delivery's reply was lost with a Redis crash and it waited in
-- the pending list), and is stale: writing it to the history would put an old state
-- after the job's final one.
--
-- KEYS: 1 job hash, 2 per-job event stream, 3 fanout stream, 4 job counters, 5 duration histogram
-- ARGV: 1 source id, 2 event JSON, 3 per-job stream cap, 4 fanout cap, 5 TTL of finished jobs,
--       6 histogram bucket bounds (JSON list)
-- Returns {status, event JSON or "", previous step, previous progress, snapshot (flat hash)};
-- the event JSON is the applied event's, also for a duplicate.

local job_key, events_key, fanout_key, counters_key, hist_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local src = ARGV[1]
local ev = cjson.decode(ARGV[2])

local function present(v) return v ~= nil and v ~= cjson.null end

local function id_parts(id)
  local ms, seq = string.match(id, "^(%d+)-(%d+)$")
  return tonumber(ms), tonumber(seq)
end

local function newer(a, b)
  local ams, aseq = id_parts(a)
  local bms, bseq = id_parts(b)
  if ams ~= bms then return ams > bms end
  return aseq > bseq
end

local function snapshot()
  return redis.call("HGETALL", job_key)
end

local last = redis.call("HGET", job_key, "src")
if last and not newer(src, last) then
  local seen = redis.call("XRANGE", events_key, src, src)
  if #seen == 0 then
    return {"stale", "", "", "0", snapshot()}
  end
  -- Fields of the entry: {"data", payload}.
  return {"duplicate", seen[1][2][2], "", "0", snapshot()}
end

local rank = {queued = 0, running = 1, completed = 2, failed = 2, cancelled = 2}
local cur = redis.call("HMGET", job_key, "state", "progress", "step", "attempt", "type",
  "created_at", "started_at")
local cur_state, cur_progress, cur_step = cur[1], tonumber(cur[2] or "0") or 0, cur[3] or ""
local cur_attempt, job_type = tonumber(cur[4] or "1") or 1, cur[5] or ev.type or "unknown"
local created_at, started_at = tonumber(cur[6] or ""), tonumber(cur[7] or "")
local ts = tonumber(ev.ts)

local function count(state)
  redis.call("HINCRBY", counters_key, job_type .. "|" .. state, 1)
end

-- Stale: the job already ended, or a state that would move it backwards.
local function stale()
  redis.call("HSET", job_key, "src", src)
  return {"stale", "", cur_step, tostring(cur_progress), snapshot()}
end

local set = {"src", src, "updated_at", tostring(ts)}
local function put(field, value)
  if present(value) then
    set[#set + 1] = field
    set[#set + 1] = type(value) == "table" and cjson.encode(value) or tostring(value)
  end
end

local kind = ev.kind
local state = cur_state
local progress = cur_progress

if kind == "created" then
  local attempt = tonumber(ev.attempt or 1) or 1
  if cur_state then
    -- Only a retry of a failed job (POST /api/jobs/{id}/retry) creates it again, and
    -- only with a higher attempt: it starts over from queued.
    if not (rank[cur_state] == 2 and attempt > cur_attempt) then return stale() end
    redis.call("HDEL", job_key, "result", "error", "finished_at", "started_at", "eta_seconds")
    redis.call("PERSIST", job_key)
    redis.call("PERSIST", events_key)
  end
  state = "queued"
  progress = 0
  put("id", ev.jobId); put("type", ev.type); put("params", ev.params); put("owner", ev.owner)
  put("created_at", ev.createdAt or ts); put("attempt", attempt); put("progress", 0)
  put("state", state)
  job_type = ev.type
  count("queued")
elseif cur_state and rank[cur_state] == 2 then
  return stale()
elseif kind == "state" then
  state = ev.state
  local attempt = tonumber(ev.attempt or cur_attempt) or cur_attempt
  if cur_state and rank[state] < rank[cur_state] and attempt <= cur_attempt then
    return stale()
  end
  put("state", state); put("attempt", attempt)
  if state ~= cur_state then count(state) end
  if state == "running" and not started_at then put("started_at", ts) end
  if rank[state] == 2 then
    put("finished_at", ts); put("eta_seconds", 0)
    if state == "completed" then progress = 100; put("progress", 100) end
    put("result", ev.result); put("error", ev.error)
    -- How long it took from acceptance to the end, by type and final state.
    local duration = ts - (created_at or ts)
    local label = job_type .. "|" .. state
    for _, le in ipairs(cjson.decode(ARGV[6])) do
      if duration <= le then redis.call("HINCRBY", hist_key, label .. "|" .. le, 1) end
    end
    redis.call("HINCRBY", hist_key, label .. "|+Inf", 1)
    redis.call("HINCRBYFLOAT", hist_key, label .. "|sum", duration)
  end
elseif kind == "progress" then
  if not cur_state then return stale() end
  progress = math.max(cur_progress, tonumber(ev.progress) or 0)
  put("progress", progress)
  put("eta_seconds", ev.etaSeconds)
else
  return redis.error_reply("unknown event kind " .. tostring(kind))
end
put("step", ev.step)
put("message", ev.message)
redis.call("HSET", job_key, unpack(set))

local out = {
  jobId = ev.jobId, eventId = src, kind = kind, state = state, progress = progress,
  step = ev.step, message = ev.message, etaSeconds = ev.etaSeconds, error = ev.error,
  result = ev.result, metrics = ev.metrics, ts = ts,
}
if rank[state] == 2 then out.etaSeconds = 0 end
local payload = cjson.encode(out)
redis.call("XADD", events_key, "MAXLEN", "~", ARGV[3], src, "data", payload)
redis.call("XADD", fanout_key, "MAXLEN", "~", ARGV[4], "*", "job", ev.jobId, "data", payload)
if rank[state] == 2 then
  redis.call("EXPIRE", job_key, ARGV[5])
  redis.call("EXPIRE", events_key, ARGV[5])
end
return {"applied", payload, cur_step, tostring(cur_progress), snapshot()}
