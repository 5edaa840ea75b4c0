-- Apply one customer's events of a micro-batch, each atomically and at most once, then read
-- the customer back as the batch left them (what the models and the alert rules need).
--
-- KEYS: profile, events, sessions, categories, recent, tickets, bought, orders, days, merged,
--       erased, alerts (the alert rules' state), alias (a visitor's: the customer it is being
--       merged into; a customer has none)
-- ARGV: max_event_ids, recent_products, recent_orders, customer_id, tenant,
--       updated_at (processing time, ms), the events as JSON:
--       [[event_id, occurred_ms, update (see feature_store/updates.py), anonymous_id or ""],
--        ...] (an empty list only reads)
-- Returns {outcomes, customer}: outcomes holds {outcome, needs_merge} per event, outcome
-- "ok", "duplicate", "erased" or "moved" (a visitor pointed at a customer since the caller
-- looked: its merge may have read the visitor already, so an event it does not hold yet is
-- not applied here but handed back, for the caller to apply to the customer); needs_merge is 1 when the event carries an anonymous id
-- whose merge into this customer has not completed (also for a duplicate: a redelivered
-- stitching event resumes a merge a crash interrupted). customer is false for an erased
-- customer, else {profile hash as a flat list, categories strongest first with weights,
-- recent products newest first, bought products, last orders, alert rule state or false}.
local profile, events, sessions, categories, recent, tickets, bought, orders, days, merged, erased,
  alerts, alias = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8],
  KEYS[9], KEYS[10], KEYS[11], KEYS[12], KEYS[13]
local max_ids, max_recent, max_orders = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local batch = cjson.decode(ARGV[7])

if redis.call('EXISTS', erased) == 1 then
  local outcomes = {}
  for i = 1, #batch do
    outcomes[i] = {'erased', 0}
  end
  return {outcomes, false}
end

-- Only a visitor (``anon:...``) can have an alias: no read for a customer.
local moved = #batch > 0 and string.sub(ARGV[4], 1, 5) == 'anon:'
  and redis.call('EXISTS', alias) == 1

local function apply(event_id, at, update, anonymous_id)
  if moved and not redis.call('ZSCORE', events, event_id) then
    return {'moved', 0}
  end
  local needs_merge = 0
  if anonymous_id ~= '' and redis.call('SISMEMBER', merged, anonymous_id .. '|done') == 0 then
    needs_merge = 1
  end
  if redis.call('ZADD', events, 'NX', at, event_id) == 0 then
    return {'duplicate', needs_merge}
  end
  trim(events, max_ids)

  redis.call('HSETNX', profile, 'customer_id', ARGV[4])
  redis.call('HSETNX', profile, 'tenant', ARGV[5])
  redis.call('HSET', profile, 'updated_at', ARGV[6])
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
end

local outcomes = {}
for i, event in ipairs(batch) do
  outcomes[i] = apply(event[1], tonumber(event[2]), event[3], event[4])
end

local fields = redis.call('HGETALL', profile)
if #fields == 0 then
  return {outcomes, false}
end
return {outcomes, {
  fields,
  redis.call('ZREVRANGE', categories, 0, -1, 'WITHSCORES'),
  redis.call('ZREVRANGE', recent, 0, -1),
  redis.call('SMEMBERS', bought),
  redis.call('ZRANGE', orders, 0, -1),
  redis.call('GET', alerts),
}}
