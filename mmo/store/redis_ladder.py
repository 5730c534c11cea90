"""
The Redis store's ladder (L{mmo.store.ILadderStore}): L{RedisLadder}, the
mixin of L{mmo.store.redis.RedisStore}.

Keys (C{P} the store's prefix, C{L} the ladder, C{S} a season):

  - C{P:ladder:L:season}: string, the current season (absent: 1);
  - C{P:ladder:L:seasons}: hash, season -> its rollover's record (msgpack);
  - C{P:ladder:L:runs}: hash, rollover run id -> the season it began;
  - C{P:ladder:L:ratings:S}: hash, player -> row (msgpack C{[version, mu,
    sigma, games, name, score]});
  - C{P:ladder:L:board:S}: sorted set, player scored by the row's score;
    read from the top (C{ZREVRANK}, C{ZREVRANGE}), ties fall to the
    greater player id first;
  - C{P:ladder:L:last}: hash, player -> the last season the player has a
    row in (to find a row of an earlier season in one step);
  - C{P:ladder:L:log:S}: list, the season's results (msgpack), in the order
    applied;
  - C{P:ladder:L:applied}: hash, match id -> the outcome of its apply.

Each step is one Lua script, atomic: an apply checks the match id, the
season and the rows' versions and writes rows, board, log and outcome; a
rollover compares and sets the season; a board read takes its rank and its
rows from one state.  The scripts build some keys from a prefix argument,
so they are for a single Redis (as the rest of the store's).
"""

from __future__ import annotations

from twisted.internet import defer

from mmo.config.ladder import LADDER_NAME
from mmo.store.common_ladder import (
    Applied,
    ApplyResult,
    LadderDump,
    LadderRow,
    SeasonRecord,
    check_apply,
    check_id,
    check_ladder,
    check_rollover,
    check_rows,
    check_season,
    check_window,
    checked,
)
from mmo.store.redis_records import number, text

#: Rows a fill writes in one command.
FILL_CHUNK = 2000

# KEYS: runs, season, seasons
# ARGV: from season, new season, record, run id
# The season the run began, or the current one if it began none.
ROLLOVER = """
if ARGV[4] ~= '' then
  local done = redis.call('HGET', KEYS[1], ARGV[4])
  if done then return tonumber(done) end
end
local season = tonumber(redis.call('GET', KEYS[2]) or '1')
if season ~= tonumber(ARGV[1]) then return season end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], ARGV[4], ARGV[2]) end
return tonumber(ARGV[2])
"""

# KEYS: last
# ARGV: season, prefix of ratings keys, player...
# Per player: the season of its latest row at or before the season (0: none)
# and the row ('' for none).
RATINGS = """
local season = tonumber(ARGV[1])
local out = {}
for i = 3, #ARGV do
  local player = ARGV[i]
  local found = season
  local row = redis.call('HGET', ARGV[2] .. season, player)
  if not row then
    found = tonumber(redis.call('HGET', KEYS[1], player) or '0')
    if found >= season then
      found = season - 1
      while found > 0 and redis.call('HEXISTS', ARGV[2] .. found, player) == 0 do
        found = found - 1
      end
    end
    if found > 0 then row = redis.call('HGET', ARGV[2] .. found, player) end
  end
  out[#out + 1] = found
  out[#out + 1] = row or ''
end
return out
"""

# KEYS: applied, season, ratings, board, log, last
# ARGV: match id, season, record, outcome, then per row: player, version
#       expected, row, score
# {0}: applied; {1, outcome}: a duplicate; {2, season}: another season;
# {3}: a row's version is not the one expected.
APPLY = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then return {1, stored} end
local season = tonumber(redis.call('GET', KEYS[2]) or '1')
if season ~= tonumber(ARGV[2]) then return {2, season} end
for i = 5, #ARGV, 4 do
  local row = redis.call('HGET', KEYS[3], ARGV[i])
  local version = 0
  if row then version = cmsgpack.unpack(row)[1] end
  if version ~= tonumber(ARGV[i + 1]) then return {3} end
end
for i = 5, #ARGV, 4 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
  redis.call('ZADD', KEYS[4], ARGV[i + 3], ARGV[i])
  redis.call('HSET', KEYS[6], ARGV[i], ARGV[2])
end
redis.call('RPUSH', KEYS[5], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
return {0}
"""

# KEYS: board, ratings; ARGV: start, stop (0-based, inclusive)
# {start, players, rows}
TOP = """
local players = redis.call('ZREVRANGE', KEYS[1], ARGV[1], ARGV[2])
if #players == 0 then return {tonumber(ARGV[1]), {}, {}} end
return {tonumber(ARGV[1]), players, redis.call('HMGET', KEYS[2], unpack(players))}
"""

# KEYS: board, ratings; ARGV: player, count on each side
# {start, players, rows}: the player's window; {} if the player has no row.
AROUND = """
local rank = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not rank then return {} end
local count = tonumber(ARGV[2])
local start = rank - count
if start < 0 then start = 0 end
local players = redis.call('ZREVRANGE', KEYS[1], start, rank + count)
return {start, players, redis.call('HMGET', KEYS[2], unpack(players))}
"""


def _board(reply, season) -> list[tuple[int, LadderRow]]:
    """A L{TOP} or L{AROUND} reply as (rank, row) pairs."""
    if not reply:
        return []
    start, players, rows = reply
    return [
        (start + i + 1, LadderRow.unpack(text(player), season, row))
        for i, (player, row) in enumerate(zip(players, rows, strict=True))
    ]


class RedisLadder:
    """
    L{mmo.store.ILadderStore} for L{mmo.store.redis.RedisStore}, on its
    connection (C{_eval}, C{_call}) and keys (C{_key}).
    """

    def _ladder_key(self, ladder: str, *parts) -> str:
        return self._key("ladder", check_ladder(ladder), *map(str, parts))

    @checked
    @defer.inlineCallbacks
    def ladder_season(self, ladder):
        season = yield self._call("get", self._ladder_key(ladder, "season"))
        return 1 if season is None else int(season)

    @checked
    @defer.inlineCallbacks
    def ladder_seasons(self, ladder):
        records = yield self._call("hgetall", self._ladder_key(ladder, "seasons"))
        return sorted(
            (SeasonRecord.unpack(int(season), blob) for season, blob in records.items()),
            key=lambda record: record.season,
        )

    @checked
    def ladder_rollover(self, ladder, from_season, record):
        check_rollover(from_season, record)
        keys = [self._ladder_key(ladder, k) for k in ("runs", "season", "seasons")]
        args = [from_season, record.season, record.pack(), record.run_id]
        return self._eval(ROLLOVER, keys, args)

    @checked
    @defer.inlineCallbacks
    def ladder_ratings(self, ladder, season, players):
        players = [check_id(player, "player") for player in players]
        check_season(season)
        if not players:
            return {}
        reply = yield self._eval(
            RATINGS,
            [self._ladder_key(ladder, "last")],
            [season, self._ladder_key(ladder, "ratings", "")] + players,
        )
        found = {}
        for player, found_in, row in zip(players, reply[::2], reply[1::2], strict=True):
            if row:
                found[player] = LadderRow.unpack(player, int(found_in), row)
        return found

    @checked
    @defer.inlineCallbacks
    def ladder_apply(self, ladder, season, match_id, rows, record, outcome):
        check_apply(ladder, season, match_id, rows)
        keys = [
            self._ladder_key(ladder, "applied"),
            self._ladder_key(ladder, "season"),
            self._ladder_key(ladder, "ratings", season),
            self._ladder_key(ladder, "board", season),
            self._ladder_key(ladder, "log", season),
            self._ladder_key(ladder, "last"),
        ]
        args = [match_id, season, record, outcome]
        for row in rows:
            args += [row.player, row.version - 1, row.pack(), number(row.score)]
        reply = yield self._eval(APPLY, keys, args)
        status = int(reply[0])
        if status == 0:
            return ApplyResult(Applied.APPLIED)
        if status == 1:
            return ApplyResult(Applied.DUPLICATE, outcome=reply[1])
        if status == 2:
            return ApplyResult(Applied.SEASON, season=int(reply[1]))
        return ApplyResult(Applied.CONFLICT)

    @checked
    def ladder_matches(self, ladder, season):
        return self._call("lrange", self._ladder_key(ladder, "log", check_season(season)), 0, -1)

    def _board_keys(self, ladder, season) -> list[str]:
        check_season(season)
        return [
            self._ladder_key(ladder, "board", season),
            self._ladder_key(ladder, "ratings", season),
        ]

    @checked
    @defer.inlineCallbacks
    def ladder_top(self, ladder, season, start, count):
        check_window(start, count)
        reply = yield self._eval(TOP, self._board_keys(ladder, season), [start, start + count - 1])
        return _board(reply, season)

    @checked
    @defer.inlineCallbacks
    def ladder_rank(self, ladder, season, player):
        board = yield self.ladder_around(ladder, season, player, 0)
        return board[0] if board else None

    @checked
    @defer.inlineCallbacks
    def ladder_around(self, ladder, season, player, count):
        check_id(player, "player")
        if count != 0:
            check_window(0, count)
        reply = yield self._eval(AROUND, self._board_keys(ladder, season), [player, count])
        return _board(reply, season)

    @checked
    def ladder_size(self, ladder, season):
        return self._call("zcard", self._board_keys(ladder, season)[0])

    @checked
    @defer.inlineCallbacks
    def ladder_fill(self, ladder, season, rows):
        rows = check_rows(season, rows)
        board, ratings = self._board_keys(ladder, season)
        last = self._ladder_key(ladder, "last")
        for start in range(0, len(rows), FILL_CHUNK):
            chunk = rows[start : start + FILL_CHUNK]
            scores = {row.player: row.score for row in chunk}
            yield defer.gatherResults(
                [
                    self._call("zadd", board, *_score_pairs(scores)),
                    self._call("hmset", ratings, {row.player: row.pack() for row in chunk}),
                    self._call("hmset", last, {row.player: season for row in chunk}),
                ],
                consumeErrors=True,
            )


def _score_pairs(scores: dict[str, float]) -> list:
    pairs = []
    for player, score in scores.items():
        pairs += [number(score), player]
    return pairs


# -- dump and restore: used by mmo.store.redis.RedisStore's -----------------------

#: The kinds of a ladder's keys (C{P:ladder:L:KIND}, or C{P:ladder:L:KIND:S}).
LADDER_KEYS = frozenset({"season", "seasons", "runs", "ratings", "board", "last", "log", "applied"})

#: Keys one SCAN step asks for.
SCAN_COUNT = 1000

#: Results a restore appends to a season's log, or outcomes it writes, in one command.
RESTORE_CHUNK = 1000


def _glob_escaped(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisLadderBackup:
    """
    The ladders' part of L{mmo.store.redis.RedisStore}'s dump and restore,
    on the methods of L{RedisLadder}.  No key lists the ladders: a dump
    finds them by their keys (C{SCAN}).
    """

    @defer.inlineCallbacks
    def _ladder_store_keys(self) -> list[tuple[str, str, str]]:
        """
        Every ladder key of the store as C{(ladder, kind, season)} (C{""}
        for a key of no season).
        """
        head = self._key("ladder", "")
        pattern = _glob_escaped(head) + "*"
        found, cursor = set(), 0
        while True:
            cursor, keys = yield self._call("scan", cursor, pattern, SCAN_COUNT)
            for key in keys:
                ladder, _, rest = text(key)[len(head) :].partition(":")
                kind, _, season = rest.partition(":")
                if kind in LADDER_KEYS and LADDER_NAME.match(ladder):
                    found.add((ladder, kind, season))
            cursor = int(cursor)
            if cursor == 0:
                return sorted(found)

    @defer.inlineCallbacks
    def _dump_ladders(self) -> list[LadderDump]:
        """Every ladder, each part read atomically (not all of it at once)."""
        seasons: dict[str, dict[str, set[int]]] = {}
        for ladder, kind, season in (yield self._ladder_store_keys()):
            kinds = seasons.setdefault(ladder, {"ratings": set(), "log": set()})
            if kind in kinds and season.isdigit():
                kinds[kind].add(int(season))
        ladders = []
        for ladder, kinds in sorted(seasons.items()):
            ladders.append((yield self._dump_ladder(ladder, kinds["ratings"], kinds["log"])))
        return ladders

    @defer.inlineCallbacks
    def _dump_ladder(self, ladder, rated, logged) -> LadderDump:
        rows = []
        for season in sorted(rated):
            found = yield self._call("hgetall", self._ladder_key(ladder, "ratings", season))
            rows += [LadderRow.unpack(text(p), season, blob) for p, blob in found.items()]
        matches = []
        for season in sorted(logged):
            log = yield self._call("lrange", self._ladder_key(ladder, "log", season), 0, -1)
            matches += [(season, record) for record in log]
        applied = yield self._call("hgetall", self._ladder_key(ladder, "applied"))
        return LadderDump(
            ladder,
            (yield self.ladder_season(ladder)),
            (yield self.ladder_seasons(ladder)),
            rows,
            matches,
            sorted((text(match), outcome) for match, outcome in applied.items()),
        )

    @defer.inlineCallbacks
    def _restore_ladder(self, ladder: LadderDump):
        """Write a checked ladder into a store that has none of its keys."""
        name = ladder.name
        if ladder.seasons:
            yield self._call("set", self._ladder_key(name, "season"), ladder.season)
            yield self._call(
                "hmset",
                self._ladder_key(name, "seasons"),
                {record.season: record.pack() for record in ladder.seasons},
            )
        runs = {record.run_id: record.season for record in ladder.seasons if record.run_id}
        if runs:
            yield self._call("hmset", self._ladder_key(name, "runs"), runs)
        by_season: dict[int, list[LadderRow]] = {}
        for row in ladder.rows:
            by_season.setdefault(row.season, []).append(row)
        # Ascending, so that each player's last season is the last filled.
        for season in sorted(by_season):
            yield self.ladder_fill(name, season, by_season[season])
        for start in range(0, len(ladder.matches), RESTORE_CHUNK):
            for season, records in _by_season(ladder.matches[start : start + RESTORE_CHUNK]):
                yield self._call("rpush", self._ladder_key(name, "log", season), records)
        for start in range(0, len(ladder.applied), RESTORE_CHUNK):
            chunk = dict(ladder.applied[start : start + RESTORE_CHUNK])
            yield self._call("hmset", self._ladder_key(name, "applied"), chunk)


def _by_season(matches):
    """C{(season, [record, ...])} of consecutive entries of one season."""
    groups: list[tuple[int, list[bytes]]] = []
    for season, record in matches:
        if not groups or groups[-1][0] != season:
            groups.append((season, []))
        groups[-1][1].append(record)
    return groups
