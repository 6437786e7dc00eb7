-- Save each key of KEYS_FILE exactly once (thread t takes every n-th key);
-- a thread stops when its keys run out, so no key is ever saved twice.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  keys = {}
  local i = 0
  for line in io.lines(os.getenv("KEYS_FILE")) do
    if i % tonumber(os.getenv("THREADS")) == tid then
      table.insert(keys, line)
    end
    i = i + 1
  end
  index = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  local token = os.getenv("TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  index = index + 1
  if index > #keys then
    -- Out of keys: stop, and send a harmless request rather than a duplicate save.
    wrk.thread:stop()
    return wrk.format("GET", "/healthz", nil, nil)
  end
  -- Each line: the key, a tab, its public URL (the guide's save stores it, NOT NULL).
  local key, url = keys[index]:match("^([^\t]+)\t(.*)$")
  return wrk.format(nil, nil, nil, '{"objectKey": "' .. key .. '", "publicFileUrl": "' .. url .. '"}')
end
