-- wrk script: first-party NDJSON batches for POST /v1/events, every event a new id.
--
--   wrk -t2 -c8 -d30s --latency -s events_ndjson.lua URL -- BATCH TOKEN RUN_ID
local made = 0
function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

local batch, token, run, n
local kinds = { "message.sent", "message.delivered", "message.read", "message.inbound" }

function init(args)
  batch = tonumber(args[1]) or 1000
  token = args[2] or ""
  run = args[3] or tostring(os.time())
  n = 0
end

function request()
  local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
  local parts = {}
  for i = 1, batch do
    n = n + 1
    parts[i] = string.format(
      '{"event_id":"bench-%s-%d-%d","event_type":"%s","occurred_at":"%s","message_id":"m-%s-%d-%d",' ..
      '"contact":"+4477009%05d","campaign":"bench","locale":"en_GB"}',
      run, tid, n, kinds[n % 4 + 1], now, run, tid, math.floor(n / 4), n % 100000)
  end
  return wrk.format("POST", nil,
    { ["Content-Type"] = "application/x-ndjson", ["Authorization"] = "Bearer " .. token },
    table.concat(parts, "\n"))
end
