-- wrk script for scripts/soak.py's "wrk" client class: keep-alive GETs over a
-- few static and dynamic targets; every response is validated (status 200 and a
-- body from the expected set), and done() prints one SOAK_WRK line with the
-- totals of all threads for soak.py to parse.

local paths = {"/static", "/item/1?q=a", "/item/22?q=bb", "/item/333?q=soak", "/item/4444?q=x-y"}
local valid = {
  ["static-ok"] = true,
  ["item 1 q=a"] = true,
  ["item 22 q=bb"] = true,
  ["item 333 q=soak"] = true,
  ["item 4444 q=x-y"] = true,
}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  bad = 0
  sample = ""
  counter = 0
end

function request()
  counter = counter + 1
  return wrk.format("GET", paths[(counter % #paths) + 1])
end

function response(status, headers, body)
  if status == 200 and valid[body] then
    ok = ok + 1
  else
    bad = bad + 1
    if sample == "" then
      sample = tostring(status) .. " " .. string.sub(tostring(body), 1, 60)
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_bad = total_bad + thread:get("bad")
    if first == "" then first = thread:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK_WRK ok=%d bad=%d connect=%d read=%d write=%d status=%d timeout=%d sample=%q\n",
    total_ok, total_bad, e.connect, e.read, e.write, e.status, e.timeout, first))
end
