-- wrk script for the API scenario. BENCH_UPLOAD names a file to send as a multipart/form-data
-- upload (part "file"); without it the request is a plain GET. BENCH_TOKEN, if set, is sent as
-- a bearer token. done() prints one JSON line that bench/scenarios/api.py reads.

local upload = os.getenv("BENCH_UPLOAD")
local token = os.getenv("BENCH_TOKEN")

if upload and upload ~= "" then
  local boundary = "imgproc-bench-5f0c2b9e"
  local file = assert(io.open(upload, "rb"))
  local content = file:read("*a")
  file:close()
  wrk.method = "POST"
  wrk.body = "--" .. boundary .. "\r\n"
    .. 'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
    .. "Content-Type: image/jpeg\r\n\r\n"
    .. content
    .. "\r\n--" .. boundary .. "--\r\n"
  wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
end

if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean
  ))
end
