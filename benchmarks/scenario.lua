-- One benchmark scenario for wrk, configured through the environment (benchmarks/load.py sets it):
--   BENCH_METHOD   GET or POST
--   BENCH_PATH     request path
--   BENCH_AUTH     Authorization header value (optional)
--   BENCH_BODY     form body; {1}, {2}, ... are replaced by the tab-separated fields of an input line
--   BENCH_INPUTS   file with one input per line (optional); each wrk thread takes every n-th line
--                  and rotates through its share, so no two threads send the same input
--   BENCH_STATUS   the status that counts as success (default 200)
--   BENCH_THREADS  wrk's -t (each thread's share of the inputs)
--   BENCH_EXPECT   optional: success also needs one of these |-separated words in the body
-- done() prints one line "BENCH_RESULT {json}" with requests, duration, latency percentiles,
-- application errors (any other answer), 429s, socket errors and how often inputs wrapped around.

local method = os.getenv("BENCH_METHOD") or "GET"
local path = os.getenv("BENCH_PATH") or "/"
local auth = os.getenv("BENCH_AUTH")
local body_template = os.getenv("BENCH_BODY")
local inputs_file = os.getenv("BENCH_INPUTS")
local expected_status = tonumber(os.getenv("BENCH_STATUS") or "200")
local thread_total = tonumber(os.getenv("BENCH_THREADS") or "1")  -- wrk runs setup() then init() thread by thread
local expect = {}
for word in string.gmatch(os.getenv("BENCH_EXPECT") or "", "[^|]+") do
  table.insert(expect, word)
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

local inputs = {}
local position = 0
errors = 0
throttled = 0
wrapped = 0
first_error = ""

function init(args)
  if inputs_file and inputs_file ~= "" then
    local index = 0
    for line in io.lines(inputs_file) do
      if index % thread_total == id then
        local fields = {}
        for field in string.gmatch(line, "[^\t]+") do
          table.insert(fields, field)
        end
        table.insert(inputs, fields)
      end
      index = index + 1
    end
  end
  wrk.method = method
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  if auth and auth ~= "" then
    wrk.headers["Authorization"] = auth
  end
end

local function fill(template, fields)
  return (string.gsub(template, "{(%d+)}", function(n) return fields[tonumber(n)] or "" end))
end

function request()
  local body = nil
  if body_template and body_template ~= "" then
    if #inputs > 0 then
      position = position + 1
      if position > #inputs then
        position = 1
        wrapped = wrapped + 1
      end
      body = fill(body_template, inputs[position])
    else
      body = body_template
    end
  end
  return wrk.format(method, path, nil, body)
end

function response(status, headers, body)
  local ok = status == expected_status
  if ok and #expect > 0 then
    ok = false
    for _, word in ipairs(expect) do
      if body and string.find(body, word, 1, true) then
        ok = true
        break
      end
    end
  end
  if not ok then
    errors = errors + 1
    if status == 429 then
      throttled = throttled + 1
    end
    if first_error == "" then
      first_error = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local errors_total, throttled_total, wrapped_total, sample = 0, 0, 0, ""
  for _, thread in ipairs(threads) do
    errors_total = errors_total + thread:get("errors")
    throttled_total = throttled_total + thread:get("throttled")
    wrapped_total = wrapped_total + thread:get("wrapped")
    if sample == "" then
      sample = thread:get("first_error")
    end
  end
  local socket = summary.errors
  sample = string.gsub(sample, '[%c"\\]', " ")
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, ' ..
    '"throttled": %d, "wrapped": %d, "socket_errors": %d, "timeouts": %d, "first_error": "%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), errors_total,
    throttled_total, wrapped_total, socket.connect + socket.read + socket.write, socket.timeout, sample))
end
