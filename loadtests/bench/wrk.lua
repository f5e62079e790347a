-- wrk script for `make bench`: POST the JSON body in $BENTOGATE_WRK_BODY on every request, and at
-- the end print one line "wrk-json {...}" with the counts and latency percentiles (microseconds).
-- wrk 4 corrects its latency figures for coordinated omission: a response slower than twice the
-- mean interval of its connection adds the samples that connection would have taken meanwhile.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BENTOGATE_WRK_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
