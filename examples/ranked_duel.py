"""
A ranked duel played in the lobby: rock, paper, scissors in a match's room,
decided by the server, the result reported to the ladder.

Run it with the standalone server:

    PYTHONPATH=examples twistd -n mmo --config examples/ranked_duel.toml

(after `make certs CONFIG=examples/ranked_duel.toml` once).  Two players
send C{ladder.queue.join} C{{"ladder": "duel", "mode": "1v1"}}; the ladder
matches them and the lobby moves both into the match's room
(C{ladder.matched}).  Each sends C{room.duel.throw} C{{"throw": "rock"}}
(or paper, scissors).  Once both threw, every member of the room is pushed
C{room.duel.result} and the result goes to the ladder, from the server:
C{ladder.result} then tells each player his new rating and rank.  A draw
is a tie.

The rule is a L{LobbyService} subclass, named in the config by
C{[lobby] lobby_class}; it adds one message, C{room.duel.throw}
(C{docs/extending.md}), and reports with L{mmo.ladder.report.report_result}.
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.internet import defer

from mmo.ladder.report import report_result
from mmo.lobby.service import LobbyService
from mmo.unavailable import log_failure
from mmo.wire.codes import BAD_REQUEST, NOT_ALLOWED, WireError

#: What beats what.
BEATS = {"rock": "scissors", "paper": "rock", "scissors": "paper"}

#: Duels remembered as decided (a throw in a decided duel's room is refused).
DECIDED_KEPT = 10000


def ranks(first: str, second: str) -> list[int]:
    """The two teams' ranks (lower is better; equal: a tie) for their throws."""
    if first == second:
        return [0, 0]
    return [0, 1] if BEATS[first] == second else [1, 0]


class RankedDuelLobby(LobbyService):
    """
    The lobby, with rock, paper, scissors in the rooms of one-on-one
    ranked matches.

    @ivar throws: Match id -> the throws made so far, by account id.
    @ivar decided: The match ids decided, oldest first (at most L{DECIDED_KEPT}).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.throws: dict[str, dict[str, str]] = {}
        self.decided: OrderedDict[str, None] = OrderedDict()

    async def on_room_duel_throw(self, caller, message) -> dict:
        throw = message.get("throw")
        if throw not in BEATS:
            raise WireError(BAD_REQUEST, "'throw' must be rock, paper or scissors")
        room = self.room_of(caller)
        match = room.match if room is not None else None
        if match is None or [len(team) for team in match["teams"]] != [1, 1]:
            raise WireError(NOT_ALLOWED, "you are in no one-on-one match's room")
        if match["match"] in self.decided:
            raise WireError(NOT_ALLOWED, "this duel is decided")
        throws = self.throws.setdefault(match["match"], {})
        if caller.account_id in throws:
            raise WireError(NOT_ALLOWED, "you threw already")
        throws[caller.account_id] = throw
        if len(throws) < 2:
            return {"thrown": throw, "decided": False}
        del self.throws[match["match"]]
        self.decided[match["match"]] = None
        if len(self.decided) > DECIDED_KEPT:
            self.decided.popitem(last=False)
        [first], [second] = match["teams"]
        result = ranks(throws[first], throws[second])
        names = {c.account_id: c.display_name for c in self.members(room)}
        winner = None if result[0] == result[1] else (first if result[0] == 0 else second)
        await self.deliver(
            self.members(room),
            "room.duel.result",
            match=match["match"],
            throws={names.get(p, p): throws[p] for p in (first, second)},
            winner=names.get(winner, winner) if winner is not None else None,
        )
        # Reported in the background: the ladder answers when it can, and
        # a retry counts once.
        reported = report_result(
            self.bus,
            match["ladder"],
            match["match"],
            ranks=result,
            sender="lobby",
            reactor=self.reactor,
        )
        defer.ensureDeferred(reported).addErrback(
            log_failure,
            self.log,
            "ranked duel: the result of {match} was not reported",
            match=match["match"],
        )
        return {"thrown": throw, "decided": True}
