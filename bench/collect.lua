-- wrk: POST /batch with BATCH track events, each with a messageId no other request uses
-- (the thread's id, a counter), as a tracking library sends them.
-- `thread_id` is a global each thread's state gets from setup(); `threads` counts them in
-- the main state.
local counter = 0
local threads = 0
local batch = tonumber(os.getenv("BENCH_BATCH") or "10")
local key = os.getenv("BENCH_AUTH") or ""

function setup(thread)
  thread:set("thread_id", threads)
  threads = threads + 1
end

function request()
  counter = counter + 1
  local events = {}
  for i = 1, batch do
    events[i] = string.format(
      '{"type":"track","messageId":"t%d-%d-%d","anonymousId":"anon-%d","event":"Page Viewed","properties":{"path":"/pricing","referrer":"https://www.example.com/","n":%d},"context":{"library":{"name":"analytics.js","version":"4.1.0"},"page":{"url":"https://shop.example.com/pricing"}},"timestamp":"2026-12-04T10:00:00.000Z","sentAt":"2026-12-04T10:00:01.000Z"}',
      thread_id or 0, counter, i, counter % 5000, i)
  end
  return wrk.format("POST", "/batch", {["Content-Type"] = "application/json", ["Authorization"] = key},
    '{"batch":[' .. table.concat(events, ",") .. ']}')
end
