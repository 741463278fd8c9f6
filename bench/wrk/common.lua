-- Shared by the coregate load scripts: done() prints one machine-readable line,
--   WRK_JSON {"duration_us":...,"requests":...,"errors":{...},"latency_us":{...}}
-- which bench/harness/bench.py parses. Only the API wrk and wrk2 share is used
-- (done(summary, latency, requests), latency:percentile(p)), so every script here runs under
-- both; under wrk2 (-R rate) the latencies are corrected for coordinated omission, under plain
-- wrk they are not (bench.py uses them only for the closed-loop scaling curves).
local M = {}

-- Percentiles reported, in percent.
local PERCENTILES = { 50, 75, 90, 99, 99.9, 99.99 }

function M.done(summary, latency, requests)
   local p = {}
   for _, q in ipairs(PERCENTILES) do
      p[#p + 1] = string.format('"%s":%d', tostring(q), latency:percentile(q))
   end
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p":{%s}}}\n',
      summary.duration, summary.requests, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max, table.concat(p, ",")))
end

-- Makes `require "common"` work from any working directory: every script starts with
--   package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
return M
