-- A sketch of a ranking (a sorted set) for percentiles: its size, its `top` highest scores
-- exactly (highest first), and the scores at `points` evenly spaced ranks (lowest first).
-- KEYS: the ranking. ARGV: top, points. It only reads: O(top + points * log n).
local n = redis.call('ZCARD', KEYS[1])
local top, points = tonumber(ARGV[1]), tonumber(ARGV[2])
if n == 0 then
  return {0, {}, {}}
end
local highest = redis.call('ZREVRANGE', KEYS[1], 0, top - 1, 'WITHSCORES')
local scores = {}
for i = 2, #highest, 2 do
  scores[#scores + 1] = highest[i]
end
local spaced = {}
if n > top then
  for i = 0, points - 1 do
    local rank = math.floor(i * (n - 1) / (points - 1))
    spaced[#spaced + 1] = redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')[2]
  end
end
return {n, scores, spaced}
