-- Each request asks for a random club's page under the path given in PAGE ("/clubs/" or "/hand/").
local page = os.getenv("PAGE") or "/clubs/"
local clubs = tonumber(os.getenv("CLUBS") or "10")
math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
request = function()
  return wrk.format("GET", page .. "club-" .. math.random(0, clubs - 1) .. "/")
end
