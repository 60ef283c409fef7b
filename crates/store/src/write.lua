-- Applies WriteBatches of shopmind-store (see redis_store.rs, which encodes them): several in
-- one call, one after another, each exactly as if it were applied alone. The whole call is
-- atomic (Redis runs a script without interleaving other clients' commands).
--
-- KEYS: for each batch, its guard key if it has one, then the keys of each write, in order (one
-- per write; two for cooccur, see KEY_COUNT).
-- ARGV: for each batch, a header of three: "1" with a guard, "0" without; the guard's TTL in
-- milliseconds; the number of writes. Then each write: its op code and a fixed number of
-- arguments (ARITY), all strings.
--
-- Returns one reply per batch, in order: {"skipped"} if its guard key exists (nothing written),
-- else {"applied"} or, if a write failed, {"applied", index, key, error} for the first that did
-- (0-based index in the batch, the key it failed on, the Redis error text). As in a MULTI/EXEC,
-- a failed write changes nothing and the others are still applied; the guard is set either way.
--
-- Adding an op: a function ops.<code>(k, a) (k: the index of its first key in KEYS, a: the
-- index of its first argument in ARGV), its argument count in ARITY, its key count in
-- KEY_COUNT if not 1, and, before it writes, a call of wrote(key) for every key it may create
-- and of reset(key) for every key it may delete or whose TTL it may clear (so that what
-- ops.pexpire remembers stays true). Then its encoding in redis_store.rs
-- and its mirror in memory.rs.

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

-- call for a command on `key` that is not the write's first key: an error names `key`.
local function call_on(key, ...)
  local reply = redis.pcall(...)
  if type(reply) == 'table' and reply.err then
    fail(reply.err, key)
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
  -- Up to 15 digits a double holds exactly (and distinct canonical texts are distinct numbers).
  if #a < 16 and #b < 16 then
    return tonumber(a) < tonumber(b) and -1 or 1
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

-- Fails with WRONGTYPE (naming key) if key exists and is not a sorted set.
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
  pexpire = 1, zadd = 2, zaddlt = 2, hlatest = 3, hmax = 2, hmin = 2, hdecay = 4, cooccur = 8, zrem = 1,
}

-- Keys per write where not 1.
local KEY_COUNT = { cooccur = 2 }

-- What ops.pexpire knows of a key in this call, so that it sets each key's TTL once: expiry[key]
-- is the TTL it gave the key (which has existed since, with that TTL), absent[key] is true when
-- it found the key absent (and nothing has written it since). Within one call (Redis runs a
-- script as of one instant) setting the same TTL again would set the same deadline, and
-- expiring an absent key does nothing, so a call carrying many events of one user refreshes
-- each of its keys once. Every op calls wrote(key) for each key it may create, and reset(key)
-- instead for each key it may delete or whose TTL it may clear.
local expiry, absent = {}, {}

local function wrote(key)
  absent[key] = nil
end

local function reset(key)
  expiry[key] = nil
  absent[key] = nil
end

local ops = {}

-- value, LTRIM start, LTRIM stop
ops.lpush = function(k, a)
  local key = KEYS[k]
  reset(key)
  call('LPUSH', key, ARGV[a])
  call('LTRIM', key, ARGV[a + 1], ARGV[a + 2])
end

-- member
ops.zrem = function(k, a)
  local key = KEYS[k]
  -- Removing the last member removes the key.
  reset(key)
  call('ZREM', key, ARGV[a])
end

-- by, member
ops.zincr = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('ZINCRBY', key, ARGV[a], ARGV[a + 1])
end

-- ZREMRANGEBYRANK stop (-(keep + 1))
ops.zkeep = function(k, a)
  local key, stop = KEYS[k], ARGV[a]
  -- Keeping at least one member never removes the key; keeping none (stop -1) does.
  if stop == '-1' then
    reset(key)
  end
  call('ZREMRANGEBYRANK', key, '0', stop)
end

ops.hset = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('HSET', key, ARGV[a], ARGV[a + 1])
end

ops.hincr = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('HINCRBY', key, ARGV[a], ARGV[a + 1])
end

ops.hdel = function(k, a)
  local key = KEYS[k]
  reset(key)
  call('HDEL', key, ARGV[a])
end

ops.sadd = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('SADD', key, ARGV[a])
end

ops.set = function(k, a)
  local key = KEYS[k]
  reset(key)
  call('SET', key, ARGV[a])
end

ops.del = function(k)
  local key = KEYS[k]
  reset(key)
  call('DEL', key)
end

ops.pexpire = function(k, a)
  local key, ttl = KEYS[k], ARGV[a]
  if absent[key] or expiry[key] == ttl then
    return
  end
  if call('PEXPIRE', key, ttl) == 0 then
    expiry[key], absent[key] = nil, true
  elseif ttl == '0' then
    -- PEXPIRE 0 deleted the key.
    expiry[key], absent[key] = nil, true
  else
    expiry[key] = ttl
  end
end

-- score, member
ops.zadd = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('ZADD', key, ARGV[a], ARGV[a + 1])
end

-- score, member: the member keeps the lower score (adding it if absent)
ops.zaddlt = function(k, a)
  local key = KEYS[k]
  wrote(key)
  call('ZADD', key, 'LT', ARGV[a], ARGV[a + 1])
end

-- field, value, at
ops.hlatest = function(k, a)
  local key, field, value, at = KEYS[k], ARGV[a], ARGV[a + 1], ARGV[a + 2]
  wrote(key)
  local current = call('HGET', key, field)
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
  call('HSET', key, field, at .. '|' .. value)
end

-- field, value; sign 1: max, -1: min
local function bound(key, field, value, sign)
  wrote(key)
  local current = call('HGET', key, field)
  if current then
    if not is_int(current) then
      fail('ERR hash value is not an integer')
    end
    if intcmp(value, current) * sign <= 0 then
      return
    end
  end
  call('HSET', key, field, value)
end

ops.hmax = function(k, a)
  bound(KEYS[k], ARGV[a], ARGV[a + 1], 1)
end

ops.hmin = function(k, a)
  bound(KEYS[k], ARGV[a], ARGV[a + 1], -1)
end

-- field, weight, at, half-life in ms
ops.hdecay = function(k, a)
  local key, field, at = KEYS[k], ARGV[a], ARGV[a + 2]
  wrote(key)
  local weight, h = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 3])
  if not finite(weight) then
    fail('ERR weight is not a finite number')
  end
  local score
  local current = call('HGET', key, field)
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
  call('HSET', key, field, fmt(score) .. '|' .. at)
end

-- Whether a sorts before b, byte-wise (for table.sort).
local function byteless(a, b)
  return bytecmp(a, b) < 0
end

-- KEYS: the window set, then the set of counted pairs. ARGV: member, at, window ms, cap
-- stop, neighbour prefix, neighbour suffix, keep stop, counted cap stop.
-- The window set holds occurrences '<member>|<at>' scored by time; the counted set holds the
-- pairs '<a> <b>' (a < b, byte-wise) counted so far, scored by the time they were counted.
ops.cooccur = function(k, a)
  local window_set, counted = KEYS[k], KEYS[k + 1]
  local member, at, prefix, suffix, keep_stop = ARGV[a], ARGV[a + 1], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  local t, window = tonumber(at), tonumber(ARGV[a + 2])
  local occurrence = member .. '|' .. at
  -- Every key is checked before anything changes: the window set by this ZSCORE (WRONGTYPE
  -- otherwise), the counted pairs by the ZMSCORE below or, without partners, by TYPE.
  if call('ZSCORE', window_set, occurrence) then
    check_zset(counted)
    return
  end
  -- The distinct members of the occurrences within the window, but this one, ascending.
  local seen, partners = {}, {}
  for _, other in ipairs(call('ZRANGEBYSCORE', window_set, fmt(t - window), fmt(t + window))) do
    local partner = string.match(other, '^(.*)|')
    if partner and partner ~= member and not seen[partner] then
      seen[partner] = true
      partners[#partners + 1] = partner
    end
  end
  -- Those paired with member for the first time (one ZMSCORE for all candidate pairs).
  local new = {}
  if #partners == 0 then
    check_zset(counted)
  else
    table.sort(partners, byteless)
    local pairs_ = {}
    for n, partner in ipairs(partners) do
      if byteless(member, partner) then
        pairs_[n] = member .. ' ' .. partner
      else
        pairs_[n] = partner .. ' ' .. member
      end
    end
    local scores = call_on(counted, 'ZMSCORE', counted, unpack(pairs_))
    for n, partner in ipairs(partners) do
      if not scores[n] then
        new[#new + 1] = { partner, pairs_[n] }
      end
    end
  end
  -- Both are written, and trimmed to nothing by a cap of 0 (stop -1).
  local mark_window = ARGV[a + 3] == '-1' and reset or wrote
  local mark_counted = ARGV[a + 7] == '-1' and reset or wrote
  mark_window(window_set)
  mark_counted(counted)
  if #new > 0 then
    -- Neighbour keys are computed here: fine on standalone Redis; Redis Cluster would need
    -- them declared in KEYS.
    local own = prefix .. member .. suffix
    check_zset(own)
    for _, p in ipairs(new) do
      check_zset(prefix .. p[1] .. suffix)
    end
    local mark = keep_stop == '-1' and reset or wrote
    mark(own)
    for _, p in ipairs(new) do
      local partner, pair = p[1], p[2]
      local theirs = prefix .. partner .. suffix
      mark(theirs)
      call('ZADD', counted, at, pair)
      call('ZINCRBY', own, '1', partner)
      call('ZINCRBY', theirs, '1', member)
      call('ZREMRANGEBYRANK', theirs, '0', keep_stop)
    end
    call('ZREMRANGEBYRANK', own, '0', keep_stop)
  end
  call('ZADD', window_set, at, occurrence)
  call('ZREMRANGEBYRANK', window_set, '0', ARGV[a + 3])
  call('ZREMRANGEBYRANK', counted, '0', ARGV[a + 7])
end

-- The cursor of the batch being applied: next write's ARGV and KEYS index, how many of its
-- writes have started, and the first key of the one running (for errors).
local cursor = { a = 0, k = 0, started = 0, key = nil }

-- Runs the batch's writes from the cursor on, up to `count`. A write that fails raises an
-- error that leaves the cursor past it; the caller records the error and resumes. Only a
-- failure costs a pcall of its own.
local function run(count)
  while cursor.started < count do
    local a, k = cursor.a, cursor.k
    local code = ARGV[a]
    local n = ARITY[code]
    if not n then
      error({ fatal = 'ERR shopmind-store: unknown write op ' .. tostring(code) }, 0)
    end
    cursor.a = a + n + 1
    cursor.k = k + (KEY_COUNT[code] or 1)
    cursor.started = cursor.started + 1
    cursor.key = KEYS[k]
    ops[code](k, a + 1)
  end
end

local results = {}
local a, k = 1, 1
while a <= #ARGV do
  local guarded, ttl, count = ARGV[a] == '1', ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local guard
  if guarded then
    guard = KEYS[k]
    k = k + 1
  end
  -- The guard is set first (SET NX: only if absent, of any type): the script runs atomically,
  -- so nobody sees it set before the writes, and it is set even when a write fails.
  if guarded then
    reset(guard)
  end
  if guarded and not redis.call('SET', guard, '1', 'NX', 'PX', ttl) then
    -- Skip the batch's writes.
    for _ = 1, count do
      local code = ARGV[a]
      local n = ARITY[code]
      if not n then
        return redis.error_reply('ERR shopmind-store: unknown write op ' .. tostring(code))
      end
      a = a + n + 1
      k = k + (KEY_COUNT[code] or 1)
    end
    results[#results + 1] = { 'skipped' }
  else
    cursor.a, cursor.k, cursor.started, cursor.key = a, k, 0, nil
    local first_error = nil
    while cursor.started < count do
      local ok, err = pcall(run, count)
      if not ok then
        if type(err) == 'table' and err.fatal then
          return redis.error_reply(err.fatal)
        end
        if not first_error then
          if type(err) ~= 'table' then
            err = { msg = 'ERR ' .. tostring(err) }
          end
          first_error = { 'applied', cursor.started - 1, err.key or cursor.key, err.msg }
        end
      end
    end
    a, k = cursor.a, cursor.k
    results[#results + 1] = first_error or { 'applied' }
  end
end
return results
