-- Apply one event to one customer's features, atomically and at most once.
--
-- KEYS: profile, events, sessions, categories, recent, tickets, bought, orders, days, merged,
--       erased
-- ARGV: event_id, occurred_ms, update (JSON, see feature_store/updates.py),
--       max_event_ids, recent_products, recent_orders, customer_id, tenant, anonymous_id or "",
--       updated_at (processing time, ms)
-- Returns {outcome, needs_merge}: outcome is "ok", "duplicate" or "erased"; needs_merge is 1
-- when the event carries an anonymous id whose merge into this customer has not completed
-- (also for a duplicate: a redelivered stitching event resumes a merge a crash interrupted).
local profile, events, sessions, categories, recent, tickets, bought, orders, days, merged, erased =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11]
local event_id, at = ARGV[1], tonumber(ARGV[2])
local update = cjson.decode(ARGV[3])
local max_ids, max_recent, max_orders = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local anonymous_id = ARGV[9]

if redis.call('EXISTS', erased) == 1 then
  return {'erased', 0}
end
local needs_merge = 0
if anonymous_id ~= '' and redis.call('SISMEMBER', merged, anonymous_id .. '|done') == 0 then
  needs_merge = 1
end
if redis.call('ZADD', events, 'NX', at, event_id) == 0 then
  return {'duplicate', needs_merge}
end
trim(events, max_ids)

redis.call('HSETNX', profile, 'customer_id', ARGV[7])
redis.call('HSETNX', profile, 'tenant', ARGV[8])
redis.call('HSET', profile, 'updated_at', ARGV[10])
for field, amount in pairs(update['inc']) do
  redis.call('HINCRBY', profile, field, amount)
end

keep_min(profile, 'first_seen_at', at)
keep_max(profile, 'last_seen_at', at)
add_active_day(profile, days, at)

if update['consent'] ~= nil then
  -- The latest consent by event time wins, whatever the arrival order.
  local current = tonumber(redis.call('HGET', profile, 'consent_at'))
  if current == nil or at >= current then
    redis.call('HSET', profile, 'marketing_consent', update['consent'],
               'consent_at', string.format('%d', at))
  end
end
if update['session'] then
  redis.call('SADD', sessions, update['session'])
  redis.call('HSET', profile, 'sessions', redis.call('SCARD', sessions))
end
if update['categories'] then
  for category, weight in pairs(update['categories']) do
    redis.call('ZINCRBY', categories, weight, category)
  end
end
if update['products'] then
  for _, product in ipairs(update['products']) do
    redis.call('ZADD', recent, 'GT', at, product)
  end
  trim(recent, max_recent)
end
if update['bought'] then
  redis.call('SADD', bought, unpack(update['bought']))
end
if update['order'] then
  keep_max(profile, 'last_order_at', at)
  redis.call('ZADD', orders, at, update['order'][1] .. '|' .. string.format('%d', update['order'][2]))
  trim(orders, max_orders)
end
if update['ticket'] then
  local ticket_id, status = update['ticket'][1], update['ticket'][2]
  put_ticket(tickets, ticket_id, at, event_id,
             string.format('%d', at) .. '|' .. event_id .. '|' .. status)
  recount_tickets(profile, tickets)
end

return {'ok', needs_merge}
