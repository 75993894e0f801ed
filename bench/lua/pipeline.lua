-- pipeline.lua: send DEPTH requests back to back on each connection before
-- reading (HTTP/1.1 pipelining). wrk counts the requests in the buffer and
-- expects that many responses. Usage: wrk ... -s pipeline.lua URL -- 16
init = function(args)
   local depth = tonumber(args[1]) or 16
   local batch = {}
   for i = 1, depth do
      batch[i] = wrk.format()
   end
   pipelined_requests = table.concat(batch)
end

request = function()
   return pipelined_requests
end
