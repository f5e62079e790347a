-- wrk script for `make bench`: POST the JSON body in $BENTOGATE_WRK_BODY on every request, and at
-- the end print one line "wrk-json {...}": the counts, and the latency distribution as 1000
-- quantiles (microseconds, at 0.05%, 0.15%, ... 99.95%) so that runs can be pooled.
-- wrk 4 corrects its latency figures for coordinated omission: a response slower than twice the
-- mean interval of its connection adds the samples that connection would have taken meanwhile.

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(os.getenv("BENTOGATE_WRK_BODY"), "rb"))
wrk.body = file:read("*a")
file:close()

function done(summary, latency, requests)
  local q = {}
  for k = 0, 999 do
    q[#q + 1] = string.format("%d", latency:percentile((k + 0.5) / 10))
  end
  local e = summary.errors
  io.write(string.format(
    'wrk-json {"requests": %d, "duration_us": %d, "max_us": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "quantiles_us": [%s]}\n',
    summary.requests, summary.duration, latency.max, e.connect, e.read, e.write, e.status,
    e.timeout, table.concat(q, ",")))
end
