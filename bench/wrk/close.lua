-- One new connection per request: every request says `Connection: close`, the server closes
-- after answering and wrk reconnects. Measures accept + connection set-up + teardown cost.
--   wrk -t1 -c64 -d10s -s bench/wrk/close.lua http://127.0.0.1:28001/5b
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
done = require("common").done

wrk.headers["Connection"] = "close"
