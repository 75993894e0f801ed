-- report.lua: prepended by bench/run.py to every wrk script. At the end of a
-- run wrk calls done(); this prints one machine-readable line that run.py parses:
-- requests completed, duration, errors by kind and latency percentiles (us).
done = function(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d," ..
      "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d," ..
      "\"p50_us\":%d,\"p99_us\":%d,\"mean_us\":%.1f}\n",
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean))
end
