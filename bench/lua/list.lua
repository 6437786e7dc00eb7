-- GET PATH?limit=20&cursor=<c> for cursors of CURSORS_FILE in turn (pages all
-- through the table, not only its first page), with a bearer token (TOKEN).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  cursors = {}
  for line in io.lines(os.getenv("CURSORS_FILE")) do
    table.insert(cursors, line)
  end
  index = math.random(#cursors)
  local token = os.getenv("TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  index = index % #cursors + 1
  return wrk.format("GET", os.getenv("LIST_PATH") .. "?limit=20&cursor=" .. cursors[index])
end
