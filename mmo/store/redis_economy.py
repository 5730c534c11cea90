"""
The Redis store's economy ledger (L{mmo.store.IEconomyStore}):
L{RedisEconomy}, the mixin of L{mmo.store.redis.RedisStore}.

Keys (C{P} the store's prefix, C{A} an account, C{S} an asset):

  - C{P:economy:seq}: string, the last sequence number given;
  - C{P:economy:postings}: hash, sequence number -> the posting (msgpack
    C{[key, reason, at, legs]});
  - C{P:economy:keys}: hash, idempotency key -> C{"<seq> <digest of its
    legs>"};
  - C{P:economy:balance:A}: hash, asset -> balance (no field for 0);
  - C{P:economy:holders:S}: sorted set of the accounts with a balance of
    the asset other than 0, all scored 0 (read in order by C{ZRANGEBYLEX});
  - C{P:economy:accounts:K}: sorted set of the accounts of kind C{K}
    (C{escrow}, C{player}...) with some balance other than 0, all scored
    0 (kept by the posting script: the escrows left holding value are
    found at start without a scan);
  - C{P:economy:history:A}: sorted set of the sequence numbers of the
    account's postings, scored by themselves;
  - C{P:economy:loads}: hash, account -> load;
  - C{P:economy:items}: hash, unique asset -> its properties (msgpack).

A posting is one Lua script, atomic: the check of its key, its refusal
checks against the balances and loads it reads and all its writes.  The
script builds the keys of accounts and assets from a prefix argument, so
it is for a single Redis (as the rest of the store's).  With C{appendonly
yes} the script's writes reach the append-only file together.
"""

from __future__ import annotations

import msgpack
from twisted.internet import defer

from mmo.store.common_economy import (
    MAX_READ,
    Posted,
    PostResult,
    Refusal,
    Refused,
    check_account,
    check_asset,
    check_key,
    check_kind,
    check_limit,
    check_seq,
    kind_of,
    pack_entry,
    pack_legs,
    plan,
    refusal_for,
    reused,
    unpack_entry,
)
from mmo.store.common_economy_dump import dump_economy
from mmo.store.common_ladder import checked
from mmo.store.redis_records import batched, text

# KEYS: keys, seq, postings, loads, items
# ARGV: prefix, key, digest, entry, unbalanced asset ('' if none), plan:
#       msgpack [steps, limits, issues], a step [account, asset, amount,
#       weight * amount, stack, floor, ceiling] (false: no bound), a limit
#       [account, max load], an issue [faucet, asset, properties].
# {0, seq}: applied; {1, "seq digest"}: the key was applied;
# {2, why, account, asset}: refused (why: unbalanced, bounds, limit, issued).
POST = """
local prefix = ARGV[1]
local stored = redis.call('HGET', KEYS[1], ARGV[2])
if stored then return {1, stored} end
if ARGV[5] ~= '' then return {2, 'unbalanced', '', ARGV[5]} end
local function slots(balance, stack)
  if balance <= 0 then return 0 end
  return math.floor((balance + stack - 1) / stack)
end
local plan = cmsgpack.unpack(ARGV[6])
local steps, limits, issues = plan[1], plan[2], plan[3]
local afters, loads, accounts = {}, {}, {}
for i, step in ipairs(steps) do
  local account, asset = step[1], step[2]
  local before = tonumber(redis.call('HGET', prefix .. 'balance:' .. account, asset) or '0')
  local after = before + step[3]
  if (step[6] and after < step[6]) or (step[7] and after > step[7]) then
    return {2, 'bounds', account, asset}
  end
  afters[i] = after
  local change = step[4]
  if step[5] > 0 then change = change + slots(after, step[5]) - slots(before, step[5]) end
  if loads[account] == nil then
    accounts[#accounts + 1] = account
    loads[account] = 0
  end
  loads[account] = loads[account] + change
end
for _, limit in ipairs(limits) do
  local change = loads[limit[1]] or 0
  if change > 0 then
    local load = tonumber(redis.call('HGET', KEYS[4], limit[1]) or '0')
    if load + change > limit[2] then return {2, 'limit', limit[1], ''} end
  end
end
for _, issue in ipairs(issues) do
  if redis.call('HEXISTS', KEYS[5], issue[2]) == 1 then
    return {2, 'issued', issue[1], issue[2]}
  end
end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[3], seq, ARGV[4])
redis.call('HSET', KEYS[1], ARGV[2], seq .. ' ' .. ARGV[3])
for i, step in ipairs(steps) do
  local account, asset, after = step[1], step[2], afters[i]
  if after == 0 then
    redis.call('HDEL', prefix .. 'balance:' .. account, asset)
    redis.call('ZREM', prefix .. 'holders:' .. asset, account)
    if redis.call('EXISTS', prefix .. 'balance:' .. account) == 0 then
      redis.call('ZREM', prefix .. 'accounts:' .. string.match(account, '^[^:]*'), account)
    end
  else
    redis.call('HSET', prefix .. 'balance:' .. account, asset, string.format('%d', after))
    if after == step[3] then
      redis.call('ZADD', prefix .. 'holders:' .. asset, 0, account)
      redis.call('ZADD', prefix .. 'accounts:' .. string.match(account, '^[^:]*'), 0, account)
    end
  end
end
for _, account in ipairs(accounts) do
  redis.call('ZADD', prefix .. 'history:' .. account, seq, seq)
  if loads[account] ~= 0 then
    redis.call('HINCRBY', KEYS[4], account, string.format('%d', loads[account]))
  end
end
for _, issue in ipairs(issues) do
  redis.call('HSET', KEYS[5], issue[2], issue[3])
end
return {0, seq}
"""

# KEYS: history, postings; ARGV: before (exclusive), limit
# {seq, entry, seq, entry...}, newest first.
HISTORY = """
local seqs = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '-inf', 'LIMIT', 0, ARGV[2])
local out = {}
for _, seq in ipairs(seqs) do
  out[#out + 1] = seq
  out[#out + 1] = redis.call('HGET', KEYS[2], seq)
end
return out
"""

# KEYS: holders; ARGV: balance key prefix, asset, after ('' from the first), limit
# {account, balance, account, balance...} in account order.
HOLDERS = """
local from = '-'
if ARGV[3] ~= '' then from = '(' .. ARGV[3] end
local accounts = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, ARGV[4])
local out = {}
for _, account in ipairs(accounts) do
  out[#out + 1] = account
  out[#out + 1] = redis.call('HGET', ARGV[1] .. account, ARGV[2])
end
return out
"""

REFUSALS = {
    b"unbalanced": Refused.UNBALANCED,
    b"limit": Refused.LIMIT,
    b"issued": Refused.UNIQUE,
}


def _bound(value: int | None):
    return False if value is None else value


def _refusal(planned, why: bytes, account: bytes, asset: bytes) -> Refusal:
    account_name, asset_name = text(account) or None, text(asset) or None
    if why == b"bounds":
        # Each account and asset is in one step of a plan.
        [step] = [
            s for s in planned.steps if (s.leg.account, s.leg.asset) == (account_name, asset_name)
        ]
        return refusal_for(step)
    return Refusal(REFUSALS[why], account_name, asset_name)


def _post_result(reply, planned) -> PostResult:
    """A L{POST} reply as the answer of L{RedisEconomy.economy_post}."""
    status = int(reply[0])
    if status == 0:
        return PostResult(Posted.APPLIED, seq=int(reply[1]))
    if status == 1:
        seq, digest = text(reply[1]).split(" ")
        if digest != planned.digest:
            raise reused(planned.posting.key)
        return PostResult(Posted.DUPLICATE, seq=int(seq))
    return PostResult(Posted.REFUSED, refusal=_refusal(planned, *reply[1:4]))


class RedisEconomy:
    """
    L{mmo.store.IEconomyStore} for L{mmo.store.redis.RedisStore}, on its
    connection (C{_eval}, C{_call}) and keys (C{_key}).
    """

    def _economy_key(self, *parts: str) -> str:
        return self._key("economy", *parts)

    @checked
    def economy_post(self, posting):
        planned = plan(posting)
        posting = planned.posting
        steps = [
            [
                step.leg.account,
                step.leg.asset,
                step.leg.amount,
                step.leg.weight * step.leg.amount,
                step.leg.stack,
                _bound(step.floor),
                _bound(step.ceiling),
            ]
            for step in planned.steps
        ]
        limits = [[account, max_load] for account, max_load in planned.limits.items()]
        issues = [[issuer, asset, props] for asset, (issuer, props) in planned.issue.items()]
        args = [
            self._economy_key(""),
            posting.key,
            planned.digest,
            pack_entry(posting, planned.legs),
            planned.unbalanced or "",
            msgpack.packb([steps, limits, issues], use_bin_type=False),
        ]
        keys = [self._economy_key(k) for k in ("keys", "seq", "postings", "loads", "items")]
        return self._eval(POST, keys, args).addCallback(_post_result, planned)

    @checked
    @defer.inlineCallbacks
    def economy_balances(self, account):
        fields = yield self._call("hgetall", self._economy_key("balance", check_account(account)))
        return {text(asset): int(balance) for asset, balance in fields.items()}

    @checked
    @defer.inlineCallbacks
    def economy_history(self, account, limit, before=None):
        before = 2**62 if before is None else check_seq(before, "a history's before")
        keys = [
            self._economy_key("history", check_account(account)),
            self._economy_key("postings"),
        ]
        reply = yield self._eval(HISTORY, keys, [before, check_limit(limit)])
        return [
            unpack_entry(int(seq), blob).of(account)
            for seq, blob in zip(reply[::2], reply[1::2], strict=True)
        ]

    @checked
    @defer.inlineCallbacks
    def economy_posting(self, key):
        stored = yield self._call("hget", self._economy_key("keys"), check_key(key))
        if stored is None:
            return None
        seq = int(text(stored).split(" ")[0])
        blob = yield self._call("hget", self._economy_key("postings"), seq)
        return unpack_entry(seq, blob)

    @checked
    @defer.inlineCallbacks
    def economy_postings(self, after_seq, limit):
        after_seq = check_seq(after_seq, "after_seq")
        seqs = list(range(after_seq + 1, after_seq + check_limit(limit) + 1))
        blobs = yield self._call("hmget", self._economy_key("postings"), seqs)
        entries = []
        # Sequence numbers have no gap: the first missing one is past the last.
        for seq, blob in zip(seqs, blobs, strict=True):
            if blob is None:
                break
            entries.append(unpack_entry(seq, blob))
        return entries

    @checked
    @defer.inlineCallbacks
    def economy_holders(self, asset, limit, after=None):
        after = "" if after is None else check_account(after)
        reply = yield self._eval(
            HOLDERS,
            [self._economy_key("holders", check_asset(asset))],
            [self._economy_key("balance", ""), asset, after, check_limit(limit)],
        )
        return [
            (text(account), int(balance))
            for account, balance in zip(reply[::2], reply[1::2], strict=True)
        ]

    @checked
    @defer.inlineCallbacks
    def economy_load(self, account):
        load = yield self._call("hget", self._economy_key("loads"), check_account(account))
        return 0 if load is None else int(load)

    @checked
    @defer.inlineCallbacks
    def economy_item(self, asset):
        props = yield self._call("hget", self._economy_key("items"), check_asset(asset))
        return None if props is None else msgpack.unpackb(props, raw=False)

    @checked
    @defer.inlineCallbacks
    def economy_accounts(self, kind, limit, after=None):
        start = "-" if after is None else "(" + check_account(after)
        accounts = yield self._call(
            "execute_command",
            "ZRANGEBYLEX",
            self._economy_key("accounts", check_kind(kind)),
            start,
            "+",
            "LIMIT",
            0,
            check_limit(limit),
        )
        return [text(account) for account in accounts]

    # -- dump and restore: used by mmo.store.redis.RedisStore's -------------------

    @defer.inlineCallbacks
    def _dump_economy(self):
        """
        The C{"economy"} part of a dump: the postings up to the last
        number given when it starts, page by page, their digests, and the
        items they issued (balances and loads are their replay, so the part
        is consistent while postings go on).
        """
        last = int((yield self._call("get", self._economy_key("seq"))) or 0)
        postings = []
        while len(postings) < last:
            page = yield self.economy_postings(len(postings), MAX_READ)
            page = page[: last - len(postings)]
            stored = yield self._call("hmget", self._economy_key("keys"), [e.key for e in page])
            postings += [
                (entry, text(value).split(" ")[1])
                for entry, value in zip(page, stored, strict=True)
            ]
        items = yield self._call("hgetall", self._economy_key("items"))
        return dump_economy(postings, {text(asset): props for asset, props in items.items()})

    def _economy_empty(self):
        return self._call("exists", self._economy_key("seq"))

    @defer.inlineCallbacks
    def _restore_economy(self, ledger):
        """Write a checked ledger into a store that has none of its keys."""
        if ledger is None:
            return
        key = self._economy_key
        histories: dict[str, list] = {}
        for entry, _ in ledger.postings:
            for account in dict.fromkeys(leg.account for leg in entry.legs):
                histories.setdefault(account, []).extend((entry.seq, entry.seq))
        balances: dict[str, dict] = {}
        holders: dict[str, list] = {}
        for account, asset, balance in ledger.balances:
            balances.setdefault(account, {})[asset] = balance
            holders.setdefault(asset, []).extend((0, account))
        writes = [
            ("hmset", key("postings"), {e.seq: pack_entry(e, pack_legs(e.legs)) for e, _ in page})
            for page in _pages(ledger.postings)
        ]
        writes += [
            ("hmset", key("keys"), {e.key: f"{e.seq} {digest}" for e, digest in page})
            for page in _pages(ledger.postings)
        ]
        writes += [
            ("zadd", key("history", a), *chunk)
            for a, scores in histories.items()
            for chunk in _pages(scores, 2 * MAX_READ)
        ]
        writes += [("hmset", key("balance", a), fields) for a, fields in balances.items()]
        kinds: dict[str, list] = {}
        for account in balances:
            kinds.setdefault(kind_of(account), []).extend((0, account))
        writes += [
            ("zadd", key("accounts", k), *chunk)
            for k, scores in kinds.items()
            for chunk in _pages(scores, 2 * MAX_READ)
        ]
        writes += [
            ("zadd", key("holders", s), *chunk)
            for s, scores in holders.items()
            for chunk in _pages(scores, 2 * MAX_READ)
        ]
        writes += [("hmset", key("loads"), dict(page)) for page in _pages(ledger.loads)]
        writes += [
            ("hmset", key("items"), {asset: props for asset, props, _ in page})
            for page in _pages(ledger.items)
        ]
        try:
            yield batched(lambda write: self._call(*write), writes)
        except defer.FirstError as e:
            raise e.subFailure.value
        # Last: a store with the number holds the whole ledger.
        yield self._call("set", key("seq"), len(ledger.postings))


def _pages(rows, size=MAX_READ):
    return [rows[start : start + size] for start in range(0, len(rows), size)]
