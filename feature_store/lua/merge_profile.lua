-- Merge an anonymous visitor's features into a customer, once (identity stitching).
--
-- KEYS: the customer's profile, events, sessions, categories, recent, tickets, bought, orders,
--       days, merged, erased
-- ARGV: anonymous_id, snapshot (JSON of the visitor's keys), max_event_ids, recent_products,
--       recent_orders, customer_id, tenant
-- Every step is a union (sums, min/max, set union, per-item max), the same algebra as
-- apply_event.lua, so merging before or after the customer's own events gives one result.
local profile, events, sessions, categories, recent, tickets, bought, orders, days, merged, erased =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11]
local anonymous_id = ARGV[1]
local snapshot = cjson.decode(ARGV[2])
local max_ids, max_recent, max_orders = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])

if redis.call('EXISTS', erased) == 1 then
  return 'erased'
end
if redis.call('SADD', merged, anonymous_id) == 0 then
  return 'already_merged'
end
redis.call('HSETNX', profile, 'customer_id', ARGV[6])
redis.call('HSETNX', profile, 'tenant', ARGV[7])

for _, pair in ipairs(snapshot['events']) do
  redis.call('ZADD', events, 'NX', pair[2], pair[1])
end
trim(events, max_ids)

local counters = {'orders', 'items_bought', 'revenue_cents', 'views', 'product_views',
                  'cart_adds', 'cart_removes', 'checkouts_started', 'searches'}
local source = snapshot['profile']
for _, field in ipairs(counters) do
  local amount = tonumber(source[field])
  if amount and amount ~= 0 then
    redis.call('HINCRBY', profile, field, amount)
  end
end
keep_min(profile, 'first_seen_at', tonumber(source['first_seen_at']))
keep_max(profile, 'last_seen_at', tonumber(source['last_seen_at']))
keep_max(profile, 'last_order_at', tonumber(source['last_order_at']))

for _, day in ipairs(snapshot['days']) do
  redis.call('SADD', days, day)
end
if #snapshot['days'] > 0 then
  redis.call('HSET', profile, 'active_days', redis.call('SCARD', days))
end
for _, session in ipairs(snapshot['sessions']) do
  redis.call('SADD', sessions, session)
end
if #snapshot['sessions'] > 0 or redis.call('EXISTS', sessions) == 1 then
  redis.call('HSET', profile, 'sessions', redis.call('SCARD', sessions))
end
for _, pair in ipairs(snapshot['categories']) do
  redis.call('ZINCRBY', categories, pair[2], pair[1])
end
for _, pair in ipairs(snapshot['recent']) do
  redis.call('ZADD', recent, 'GT', pair[2], pair[1])
end
trim(recent, max_recent)
for _, product in ipairs(snapshot['bought']) do
  redis.call('SADD', bought, product)
end
for _, pair in ipairs(snapshot['orders']) do
  redis.call('ZADD', orders, pair[2], pair[1])
end
trim(orders, max_orders)

local ticket_changed = false
for ticket_id, value in pairs(snapshot['tickets']) do
  ticket_changed = true
  local at, id = string.match(value, '^(%d+)|([^|]*)|')
  put_ticket(tickets, ticket_id, tonumber(at), id, value)
end
if ticket_changed then
  recount_tickets(profile, tickets)
end
return 'merged'
