-- Mixed routes over keep-alive connections: each connection cycles through several paths
-- (small and large bodies, a query string), so a proxy cannot stay on one cached answer.
--   wrk -t1 -c64 -d10s -s bench/wrk/mixed.lua http://127.0.0.1:28001
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
done = require("common").done

local PATHS = { "/5b", "/64b", "/1k", "/5b?id=42", "/16k", "/64b?user=alice&page=3", "/1k", "/5b" }

local requests = {}
local next_index = 1

function init(args)
   for i, path in ipairs(PATHS) do
      requests[i] = wrk.format("GET", path)
   end
end

function request()
   local r = requests[next_index]
   next_index = next_index % #requests + 1
   return r
end
