-- wrk script for `make bench-logging`: like wrk.lua (POST $BENTOGATE_WRK_BODY to the URL's path),
-- but every $BENTOGATE_WRK_EVERY-th request (0: never) POSTs $BENTOGATE_WRK_FEEDBACK to /feedback.
-- Both requests are built once; the same script drives every server of the comparison.
-- Not merged into wrk.lua: a script that defines request() has wrk call Lua for every request,
-- client CPU that `make bench` would then take from the servers it measures on 2 cores.

local function read(name)
  local file = assert(io.open(os.getenv(name), "rb"))
  local text = file:read("*a")
  file:close()
  return text
end

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = read("BENTOGATE_WRK_BODY")
local every = tonumber(os.getenv("BENTOGATE_WRK_EVERY") or "0")
local predict, feedback = nil, nil
local n = 0

function init(args)
  predict = wrk.format()
  if every > 0 then
    feedback = wrk.format("POST", "/feedback", nil, read("BENTOGATE_WRK_FEEDBACK"))
  end
end

function request()
  n = n + 1
  if every > 0 and n % every == 0 then
    return feedback
  end
  return predict
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
