-- POST a fixed body over keep-alive connections. Body size in bytes is the first script
-- argument (default 1024); the URL's path should be the origin's POST sink, /post.
--   wrk -t1 -c64 -d10s -s bench/wrk/post.lua http://127.0.0.1:28001/post            (1 KiB)
--   wrk -t1 -c64 -d10s -s bench/wrk/post.lua http://127.0.0.1:28001/post -- 65536   (64 KiB)
package.path = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "?.lua;" .. package.path
done = require("common").done

function init(args)
   local size = tonumber(args[1]) or 1024
   wrk.method = "POST"
   wrk.body = string.rep("x", size)
   wrk.headers["Content-Type"] = "application/octet-stream"
end
