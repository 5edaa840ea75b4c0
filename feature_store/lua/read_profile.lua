-- One customer's profile in one reply, for the API's hot read (GET /v1/customers/{id}).
-- KEYS: profile hash, category weights (zset), recent products (zset).
-- Returns {profile hash as a flat field/value list, every category strongest first with its
-- weight, recent products newest first}. It only reads.
return {
  redis.call('HGETALL', KEYS[1]),
  redis.call('ZREVRANGE', KEYS[2], 0, -1, 'WITHSCORES'),
  redis.call('ZREVRANGE', KEYS[3], 0, -1),
}
