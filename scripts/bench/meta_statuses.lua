-- wrk script: signed Meta status webhooks. Every status carries a new message id (so the
-- collector stores each one rather than dropping it as a retry), and every request is signed
-- with HMAC-SHA256 over its exact body, as Meta signs them, through OpenSSL via LuaJIT's FFI.
--
--   wrk -t2 -c64 -d30s --latency -s meta_statuses.lua URL -- STATUSES SECRET RUN_ID
local ffi = require("ffi")
ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]
local crypto = ffi.load("libcrypto.so.3")

local made = 0
function setup(thread)
  thread:set("tid", made)
  made = made + 1
end

local statuses, secret, run, n, md, mdlen
local kinds = { "sent", "delivered", "read" }

function init(args)
  statuses = tonumber(args[1]) or 10
  secret = args[2] or "bench-secret"
  run = args[3] or tostring(os.time())
  n = 0
  md = ffi.new("unsigned char[32]")
  mdlen = ffi.new("unsigned int[1]")
end

local function hex(buf)
  local t = {}
  for i = 0, 31 do t[i + 1] = string.format("%02x", buf[i]) end
  return table.concat(t)
end

function request()
  local now = tostring(os.time())
  local parts = {}
  for i = 1, statuses do
    n = n + 1
    parts[i] = string.format(
      '{"id":"wamid.bench-%s-%d-%d","status":"%s","timestamp":"%s","recipient_id":"1555%07d",' ..
      '"biz_opaque_callback_data":"exp=bench;variant=%s",' ..
      '"pricing":{"billable":true,"pricing_model":"PMP","type":"regular","category":"utility"}}',
      run, tid, n, kinds[n % 3 + 1], now, n % 1000000, (n % 2 == 0) and "A" or "B")
  end
  local body = '{"object":"whatsapp_business_account","entry":[{"id":"100200300400500","changes":[' ..
      '{"field":"messages","value":{"messaging_product":"whatsapp","metadata":' ..
      '{"display_phone_number":"15550100000","phone_number_id":"600700800900111"},"statuses":[' ..
      table.concat(parts, ",") .. ']}}]}]}'
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, body, #body, md, mdlen)
  return wrk.format("POST", nil,
    { ["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = "sha256=" .. hex(md) }, body)
end
