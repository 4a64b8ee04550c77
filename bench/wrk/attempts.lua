-- Order attempts for `npm run bench`. Each call sends the next prebuilt request: one per shopper
-- token from BENCH_TOKENS (one token a line), round-robin, POST BENCH_PATH with BENCH_BODY and no
-- Idempotency-Key. done() prints one line "BENCH_RESULT <json>": latency percentiles (µs), the
-- count of each HTTP status, wrk's socket errors, and wrk's own CPU ticks (/proc/self/stat) from
-- the end of init() to done(), so the harness can show that the load generator has headroom.
-- BENCH_STOP_AFTER_201 (optional) stops after that many 201s (printing BENCH_STOPPED for the harness).
local tokens_file = os.getenv("BENCH_TOKENS")
local path = os.getenv("BENCH_PATH")
local body = os.getenv("BENCH_BODY")
-- Optional: stop (this thread) once it has seen this many 201s, e.g. to place exactly N orders.
local stop_after_201 = tonumber(os.getenv("BENCH_STOP_AFTER_201") or "")

local threads = {}
local prebuilt = {}
local count = 0
local index = 0
statuses = {}
cpu_at_start = 0

local function cpu_ticks()
  local file = io.open("/proc/self/stat", "r")
  local line = file:read("*l")
  file:close()
  -- Fields after the command name (which may hold spaces): state is the 1st, utime the 12th, stime the 13th.
  local rest = line:match(".*%) (.*)")
  local fields = {}
  for field in rest:gmatch("%S+") do fields[#fields + 1] = field end
  return tonumber(fields[12]) + tonumber(fields[13])
end

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_number", #threads)
end

function init(args)
  for token in io.lines(tokens_file) do
    if #token > 0 then
      count = count + 1
      prebuilt[count] = wrk.format("POST", path, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. token,
      }, body)
    end
  end
  if count == 0 then error("no tokens in " .. tostring(tokens_file)) end
  -- Threads start at different shoppers so they do not send the same user in lockstep.
  index = ((thread_number or 1) - 1) * 7919 % count
  cpu_at_start = cpu_ticks()
end

function request()
  index = index % count + 1
  return prebuilt[index]
end

function response(status, headers, response_body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if stop_after_201 and status == 201 and statuses[key] == stop_after_201 then
    -- wrk's main thread sleeps out the whole duration regardless: the harness sends it SIGINT on this line.
    wrk.thread:stop()
    io.write("BENCH_STOPPED\n")
    io.flush()
  end
end

function done(summary, latency, requests)
  local merged = {}
  local started = nil
  for _, thread in ipairs(threads) do
    for key, value in pairs(thread:get("statuses")) do merged[key] = (merged[key] or 0) + value end
    local at = thread:get("cpu_at_start")
    if started == nil or at < started then started = at end
  end
  local parts = {}
  for key, value in pairs(merged) do parts[#parts + 1] = string.format('"%s":%d', key, value) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"durationMicros":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latencyMicros":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d},' ..
    '"statuses":{%s},"cpuTicks":%d,"threads":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    table.concat(parts, ","), cpu_ticks() - (started or 0), #threads))
end
