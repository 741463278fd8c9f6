-- GET the URL's path over keep-alive connections (the small-body throughput test).
--   wrk -t1 -c64 -d10s -s bench/wrk/get.lua http://127.0.0.1:28001/5b
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
done = require("common").done
