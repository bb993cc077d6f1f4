-- Varied requests for wrk (bench/load.py). The file named by BENCH_REQUESTS holds one request a line:
--   METHOD <TAB> PATH [<TAB> JSON BODY]
-- Each connection walks the list in turn (threads start at different places). done() prints one line
-- "BENCH_JSON {...}" with the request count, duration, latency percentiles (microseconds), the socket
-- errors and the count of every HTTP status, which bench/load.py parses.

local requests = {}
local counter = 0
statuses = {}  -- a global: done() reads it from each thread with thread:get
local threads = {}

function setup(thread)
  thread:set("number", #threads)
  table.insert(threads, thread)
end

function init(args)
  local name = os.getenv("BENCH_REQUESTS")
  local file = assert(io.open(name, "r"), "BENCH_REQUESTS: cannot open " .. tostring(name))
  for line in file:lines() do
    local method, path, body = line:match("^(%u+)\t([^\t]+)\t?(.*)$")
    if method then
      local headers = {}
      if body ~= nil and body ~= "" then
        headers["Content-Type"] = "application/json"
      else
        body = nil
      end
      table.insert(requests, wrk.format(method, path, headers, body))
    end
  end
  file:close()
  assert(#requests > 0, "BENCH_REQUESTS: no requests in " .. name)
  counter = ((number or 0) * 7919) % #requests
end

function request()
  counter = counter % #requests + 1
  return requests[counter]
end

function response(status, headers, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
end

local function json_counts(counts)
  local parts = {}
  for key, value in pairs(counts) do
    table.insert(parts, string.format('"%s": %d', key, value))
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end

function done(summary, latency, requests_seen)
  local counts = {}
  for _, thread in ipairs(threads) do
    local seen = thread:get("statuses") or {}
    for key, value in pairs(seen) do
      counts[key] = (counts[key] or 0) + value
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p95": %d, "p99": %d, "max": %d, "mean": %.1f}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, "statuses": %s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout, json_counts(counts)))
end
