-- wrk script: sends prebuilt requests in turn and prints the latency distribution as one JSON line.
--   wrk -t1 -cN -dDs -s wrk.lua URL -- METHOD PATH CONTENT_TYPE ACCEPT BODY_FILE [BODY_FILE ...]
-- Each body file is one request body; several files are sent in rotation (e.g. one weight vector
-- per request). CONTENT_TYPE "-" sends no body (GET). Every thread reads the files once, up front.

local requests = {}
local index = 0

function init(args)
  local method, path, ctype, accept = args[1], args[2], args[3], args[4]
  local headers = {}
  if accept ~= "-" then headers["Accept"] = accept end
  if ctype == "-" then
    requests[1] = wrk.format(method, path, headers, nil)
    return
  end
  headers["Content-Type"] = ctype
  for i = 5, #args do
    local f = assert(io.open(args[i], "rb"))
    local body = f:read("*all")
    f:close()
    requests[#requests + 1] = wrk.format(method, path, headers, body)
  end
end

function request()
  index = index % #requests + 1
  return requests[index]
end

function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_s": %.6f, "errors": %d, "p50_us": %.1f, "p99_us": %.1f, "mean_us": %.1f, "max_us": %.1f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
