-- Helpers shared by apply_event.lua and merge_profile.lua (prepended to both by store.py).
-- Each keeps one feature an order-independent fold, so an event applied before or after a
-- merge, or redelivered out of order, leaves the same profile.

-- Keep only the newest `limit` members of a sorted set (by score).
local function trim(key, limit)
  local count = redis.call('ZCARD', key)
  if count > limit then
    redis.call('ZREMRANGEBYRANK', key, 0, count - limit - 1)
  end
end

-- Keep the smaller (or larger) of a profile field and `value` (integers, e.g. ms times).
local function keep_min(profile, field, value)
  if value == nil then return end
  local current = tonumber(redis.call('HGET', profile, field))
  if current == nil or value < current then
    redis.call('HSET', profile, field, string.format('%d', value))
  end
end
local function keep_max(profile, field, value)
  if value == nil then return end
  local current = tonumber(redis.call('HGET', profile, field))
  if current == nil or value > current then
    redis.call('HSET', profile, field, string.format('%d', value))
  end
end

-- Count the (UTC) day of `at` among the customer's active days: a set, so a day counts once
-- whatever the number, order or repetition of its events.
local function add_active_day(profile, days, at)
  if redis.call('SADD', days, math.floor(at / 86400000)) == 1 then
    redis.call('HSET', profile, 'active_days', redis.call('SCARD', days))
  end
end

-- A ticket's latest status wins by event time, ties broken by event id, whatever the
-- arrival order. Values are "<at ms>|<event id>|<status>"; `at` and `id` are the new one's.
local function put_ticket(tickets, ticket_id, at, id, value)
  local current = redis.call('HGET', tickets, ticket_id)
  if current then
    local cur_at, cur_id = string.match(current, '^(%d+)|([^|]*)|')
    cur_at = tonumber(cur_at)
    if at < cur_at or (at == cur_at and id <= cur_id) then
      return
    end
  end
  redis.call('HSET', tickets, ticket_id, value)
end

-- Recount the profile's tickets and the open ones (not resolved) from the tickets hash.
local function recount_tickets(profile, tickets)
  local open = 0
  local all = redis.call('HVALS', tickets)
  for _, value in ipairs(all) do
    if string.sub(value, -9) ~= '|resolved' then
      open = open + 1
    end
  end
  redis.call('HSET', profile, 'tickets_total', #all, 'open_tickets', open)
end

