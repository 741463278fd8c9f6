-- The soak's load (bench/soak.sh): a fixed rate over keep-alive connections, mostly healthy
-- requests with upstream faults mixed in, and a count of every status seen.
--   wrk -t1 -cC -dDs -s bench/harness/soak.lua URL -- RATE C
-- RATE is requests per second over all C connections: each connection waits C * 1000 / RATE
-- ms before each request (wrk's delay()), so the rate holds as long as answers take less.
-- done() prints WRK_JSON (bench/wrk/common.lua) and SOAK_STATUS {"200":n,"502":n,...}.
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../wrk/?.lua;" .. package.path
local common = require("common")

-- Weights out of 100: 89 healthy (GET bodies of three sizes, a POST), 11 faulty.
local MIX = {
   { 40, "GET", "/5b" },
   { 25, "GET", "/1k" },
   { 14, "GET", "/16k" },
   { 10, "POST", "/post" },
   { 3, "GET", "/fault/reset" },    -- the upstream resets the connection: 502
   { 3, "GET", "/fault/hang" },     -- the upstream never answers: 504 after its timeout
   { 3, "GET", "/fault/garbage" },  -- the upstream answers with garbage: 502
   { 2, "GET", "/fault/dead" },     -- nothing listens there: 502
}

local requests = {}
local wait_ms = 0
statuses = {}

function setup(thread)
   threads = threads or {}
   threads[#threads + 1] = thread
end

function init(args)
   local rate = tonumber(args[1]) or 500
   local conns = tonumber(args[2]) or 50
   wait_ms = math.floor(conns * 1000 / rate)
   math.randomseed(os.time())
   local post_body = string.rep("p", 1024)
   for _, entry in ipairs(MIX) do
      local weight, method, path = entry[1], entry[2], entry[3]
      local r
      if method == "POST" then
         r = wrk.format("POST", path, { ["Content-Type"] = "application/octet-stream" }, post_body)
      else
         r = wrk.format(method, path)
      end
      for _ = 1, weight do
         requests[#requests + 1] = r
      end
   end
end

function delay()
   return wait_ms
end

function request()
   return requests[math.random(#requests)]
end

function response(status, headers, body)
   local key = tostring(status)
   statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, reqs)
   common.done(summary, latency, reqs)
   local total = {}
   for _, thread in ipairs(threads or {}) do
      for key, n in pairs(thread:get("statuses") or {}) do
         total[key] = (total[key] or 0) + n
      end
   end
   local parts = {}
   for key, n in pairs(total) do
      parts[#parts + 1] = string.format('"%s":%d', key, n)
   end
   io.write("SOAK_STATUS {" .. table.concat(parts, ",") .. "}\n")
end
