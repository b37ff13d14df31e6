-- Scripts of the gateway's side of jobs, one per section.

--#submit
-- Accept a job in one atomic step: bind the Idempotency-Key, check the backlog,
-- append the `created` event and the job message. Runs after the inputs are stored,
-- so a key never points at a job that was not queued.
--
-- KEYS: 1 idempotency key ("" for none), 2 events stream, 3 job stream, 4 pending submits
-- ARGV: 1 job id, 2 request hash, 3 key TTL s, 4 created event JSON, 5 job message body,
--       6 backlog limit
-- Returns {"queued", job id} | {"existing", job id} | {"conflict", job id}
--       | {"busy", backlog depth}

local idem, events_key, jobs_key, pending_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
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

redis.call("XADD", events_key, "*", "body", ARGV[4])
redis.call("XADD", jobs_key, "*", "body", ARGV[5], "attempt", "1")
redis.call("ZREM", pending_key, job_id)
if idem ~= "" then
  redis.call("SET", idem, job_id .. " " .. hash, "EX", ARGV[3])
end
return {"queued", job_id}

--#retry
-- Start a failed job again, with its stored inputs and a higher attempt: a `created`
-- event (apply.lua lets it restart a finished job only with a higher attempt), the job
-- message, and its dead letter removed, in one step.
-- KEYS: 1 job hash, 2 events stream, 3 job stream, 4 dead-letter stream
-- ARGV: 1 created event JSON, 2 job message body (it carries the new attempt number; the
--       runtime counts this round's deliveries from 1), 3 dead-letter entry id or ""
-- Returns {"queued"} | {"not_failed", state}
local state = redis.call("HGET", KEYS[1], "state")
if state and state ~= "failed" then return {"not_failed", state} end
redis.call("XADD", KEYS[2], "*", "body", ARGV[1])
redis.call("XADD", KEYS[3], "*", "body", ARGV[2], "attempt", "1")
if ARGV[3] ~= "" then redis.call("XDEL", KEYS[4], ARGV[3]) end
return {"queued"}
