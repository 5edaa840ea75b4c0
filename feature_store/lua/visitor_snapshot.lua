-- Everything an anonymous visitor's keys hold, read atomically (they share one hash slot),
-- for merge_profile.lua to fold into a customer in the customer's slot.
--
-- KEYS: the visitor's profile, events, sessions, categories, recent, tickets, bought, orders,
--       days
-- Returns the nine replies in that order: hashes and scored sets as flat arrays
-- (field, value, ... / member, score, ...), sets as arrays of members.
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('SMEMBERS', KEYS[3]),
  redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES'),
  redis.call('ZRANGE', KEYS[5], 0, -1, 'WITHSCORES'),
  redis.call('HGETALL', KEYS[6]),
  redis.call('SMEMBERS', KEYS[7]),
  redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES'),
  redis.call('SMEMBERS', KEYS[9]),
}
