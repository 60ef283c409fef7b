-- Applies one WriteBatch of shopmind-store atomically (see redis_store.rs, which encodes it).
--
-- KEYS: the guard key if there is one, then the keys of each write, in order (one per write;
-- two for cooccur, see KEY_COUNT).
-- ARGV[1]: "1" with a guard, "0" without; ARGV[2]: the guard's TTL in milliseconds;
-- then each write: its op code and a fixed number of arguments (ARITY), all strings.
--
-- Returns {"skipped"} if the guard key exists (nothing written), else {"applied"} or, if a
-- write failed, {"applied", index, key, error} for the first that did (0-based index, the key
-- it failed on, the Redis error text). As in a MULTI/EXEC, a failed write changes nothing and
-- the others are still applied; the guard is set either way.

local WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

-- Stops the current write with an error (caught by the loop below).
local function fail(msg, key)
  error({ msg = msg, key = key }, 0)
end

-- redis.pcall that stops the current write on an error reply.
local function call(...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    fail(reply.err)
  end
  return reply
end

local function fmt(x)
  return string.format('%.17g', x)
end

local function finite(x)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end

-- Byte-wise comparison (Lua's '<' on strings uses the locale): -1, 0 or 1.
local function bytecmp(a, b)
  if a == b then
    return 0
  end
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y and -1 or 1
    end
  end
  return #a < #b and -1 or 1
end

-- Whether s is an i64 written as Redis writes one ('-' and digits, no leading zero).
local function is_int(s)
  if s == '0' then
    return true
  end
  local negative = string.sub(s, 1, 1) == '-'
  local digits = negative and string.sub(s, 2) or s
  if not string.find(digits, '^[1-9]%d*$') then
    return false
  end
  if #digits ~= 19 then
    return #digits < 19
  end
  return bytecmp(digits, negative and '9223372036854775808' or '9223372036854775807') <= 0
end

-- Exact comparison of two integers accepted by is_int (Lua numbers are doubles): -1, 0 or 1.
local function intcmp(a, b)
  if a == b then
    return 0
  end
  local na, nb = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if na ~= nb then
    return na and -1 or 1
  end
  local c
  if #a ~= #b then
    c = #a < #b and -1 or 1
  else
    c = bytecmp(a, b)
  end
  return na and -c or c
end

-- A decaying score as written: '-' or a digit, then digits, '.', 'e', 'E', '+', '-'; finite.
local function parse_score(s)
  if not string.find(s, '^%-?%d[%d%.eE%+%-]*$') then
    return nil
  end
  local x = tonumber(s)
  if finite(x) then
    return x
  end
  return nil
end

-- The text of a field holding '<head>|<tail>', split at the first '|'.
local function split(text)
  local bar = string.find(text, '|', 1, true)
  if not bar then
    return nil, nil
  end
  return string.sub(text, 1, bar - 1), string.sub(text, bar + 1)
end

local function check_zset(key)
  local reply = call('TYPE', key)
  local name = type(reply) == 'table' and reply.ok or reply
  if name ~= 'zset' and name ~= 'none' then
    fail(WRONGTYPE, key)
  end
end

-- 2^-(dt/h); h 0: no decay.
local function decay(dt, h)
  if h > 0 then
    return 2 ^ (-(dt / h))
  end
  return 1
end

local ARITY = {
  lpush = 3, zincr = 2, zkeep = 1, hset = 2, hincr = 2, hdel = 1, sadd = 1, set = 1, del = 0,
  pexpire = 1, zadd = 2, hlatest = 3, hmax = 2, hmin = 2, hdecay = 4, cooccur = 8, zrem = 1,
}

-- Keys per write where not 1.
local KEY_COUNT = { cooccur = 2 }

local ops = {}

-- value, LTRIM start, LTRIM stop
ops.lpush = function(k, a)
  call('LPUSH', k, a[1])
  call('LTRIM', k, a[2], a[3])
end

-- member
ops.zrem = function(k, a)
  call('ZREM', k, a[1])
end

-- by, member
ops.zincr = function(k, a)
  call('ZINCRBY', k, a[1], a[2])
end

-- ZREMRANGEBYRANK stop (-(keep + 1))
ops.zkeep = function(k, a)
  call('ZREMRANGEBYRANK', k, '0', a[1])
end

ops.hset = function(k, a)
  call('HSET', k, a[1], a[2])
end

ops.hincr = function(k, a)
  call('HINCRBY', k, a[1], a[2])
end

ops.hdel = function(k, a)
  call('HDEL', k, a[1])
end

ops.sadd = function(k, a)
  call('SADD', k, a[1])
end

ops.set = function(k, a)
  call('SET', k, a[1])
end

ops.del = function(k)
  call('DEL', k)
end

ops.pexpire = function(k, a)
  call('PEXPIRE', k, a[1])
end

-- score, member
ops.zadd = function(k, a)
  call('ZADD', k, a[1], a[2])
end

-- field, value, at
ops.hlatest = function(k, a)
  local field, value, at = a[1], a[2], a[3]
  local current = call('HGET', k, field)
  if current then
    local cur_at, cur_value = split(current)
    if not cur_at or not is_int(cur_at) then
      fail('ERR hash value is not a stamped value')
    end
    local c = intcmp(at, cur_at)
    if c < 0 or (c == 0 and bytecmp(value, cur_value) <= 0) then
      return
    end
  end
  call('HSET', k, field, at .. '|' .. value)
end

-- field, value; sign 1: max, -1: min
local function bound(k, a, sign)
  local field, value = a[1], a[2]
  local current = call('HGET', k, field)
  if current then
    if not is_int(current) then
      fail('ERR hash value is not an integer')
    end
    if intcmp(value, current) * sign <= 0 then
      return
    end
  end
  call('HSET', k, field, value)
end

ops.hmax = function(k, a)
  bound(k, a, 1)
end

ops.hmin = function(k, a)
  bound(k, a, -1)
end

-- field, weight, at, half-life in ms
ops.hdecay = function(k, a)
  local field, at = a[1], a[3]
  local weight, h = tonumber(a[2]), tonumber(a[4])
  if not finite(weight) then
    fail('ERR weight is not a finite number')
  end
  local score
  local current = call('HGET', k, field)
  if not current then
    score = weight
  else
    local head, ref = split(current)
    local old = head and parse_score(head)
    if not old or not is_int(ref) then
      fail('ERR hash value is not a decaying score')
    end
    if intcmp(at, ref) >= 0 then
      score = old * decay(tonumber(at) - tonumber(ref), h) + weight
    else
      score = old + weight * decay(tonumber(ref) - tonumber(at), h)
      at = ref
    end
  end
  if not finite(score) then
    fail('ERR resulting score is not a finite number')
  end
  call('HSET', k, field, fmt(score) .. '|' .. at)
end

-- Whether a sorts before b, byte-wise (for table.sort).
local function byteless(a, b)
  return bytecmp(a, b) < 0
end

-- KEYS: the window set (k), then the set of counted pairs. ARGV: member, at, window ms, cap
-- stop, neighbour prefix, neighbour suffix, keep stop, counted cap stop.
-- The window set holds occurrences '<member>|<at>' scored by time; the counted set holds the
-- pairs '<a> <b>' (a < b, byte-wise) counted so far, scored by the time they were counted.
ops.cooccur = function(k, a, counted)
  local member, at, prefix, suffix, keep_stop = a[1], a[2], a[5], a[6], a[7]
  local t, window = tonumber(at), tonumber(a[3])
  local occurrence = member .. '|' .. at
  check_zset(k)
  check_zset(counted)
  if call('ZSCORE', k, occurrence) then
    return
  end
  -- The distinct members of the occurrences within the window, but this one, ascending.
  local seen, partners = {}, {}
  for _, other in ipairs(call('ZRANGEBYSCORE', k, fmt(t - window), fmt(t + window))) do
    local partner = string.match(other, '^(.*)|')
    if partner and partner ~= member and not seen[partner] then
      seen[partner] = true
      partners[#partners + 1] = partner
    end
  end
  table.sort(partners, byteless)
  -- Those paired with member for the first time.
  local new = {}
  for _, partner in ipairs(partners) do
    local pair
    if byteless(member, partner) then
      pair = member .. ' ' .. partner
    else
      pair = partner .. ' ' .. member
    end
    if not call('ZSCORE', counted, pair) then
      new[#new + 1] = { partner, pair }
    end
  end
  if #new > 0 then
    -- Neighbour keys are computed here: fine on standalone Redis; Redis Cluster would need
    -- them declared in KEYS.
    local own = prefix .. member .. suffix
    check_zset(own)
    for _, p in ipairs(new) do
      check_zset(prefix .. p[1] .. suffix)
    end
    for _, p in ipairs(new) do
      local partner, pair = p[1], p[2]
      local theirs = prefix .. partner .. suffix
      call('ZADD', counted, at, pair)
      call('ZINCRBY', own, '1', partner)
      call('ZINCRBY', theirs, '1', member)
      call('ZREMRANGEBYRANK', theirs, '0', keep_stop)
    end
    call('ZREMRANGEBYRANK', own, '0', keep_stop)
  end
  call('ZADD', k, at, occurrence)
  call('ZREMRANGEBYRANK', k, '0', a[4])
  call('ZREMRANGEBYRANK', counted, '0', a[8])
end

local guarded = ARGV[1] == '1'
if guarded and redis.call('EXISTS', KEYS[1]) == 1 then
  return { 'skipped' }
end

local first_error = nil
local next_key = guarded and 2 or 1
local i, index = 3, 0
while i <= #ARGV do
  local code = ARGV[i]
  local n = ARITY[code]
  if not n then
    return redis.error_reply('ERR shopmind-store: unknown write op ' .. tostring(code))
  end
  local key = KEYS[next_key]
  local key_count = KEY_COUNT[code] or 1
  local args = { unpack(ARGV, i + 1, i + n) }
  local ok, err = pcall(ops[code], key, args, unpack(KEYS, next_key + 1, next_key + key_count - 1))
  if not ok and not first_error then
    if type(err) ~= 'table' then
      err = { msg = 'ERR ' .. tostring(err) }
    end
    first_error = { 'applied', index, err.key or key, err.msg }
  end
  next_key = next_key + key_count
  i = i + n + 1
  index = index + 1
end

if guarded then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
end
return first_error or { 'applied' }
