"""
A session's end that cannot be acted on at once, not lost: the zone side
remembers it until the entity settles (L{SessionEnds}), the gateway side
sends it again to a zone it cannot reach (L{EndedResends}).

C{"ended"} takes the entity of a session out of the world (saved where it
was).  It reaches every zone at once (L{mmo.zone.route.ZoneRoute}), but
the zone that holds the entity can act on it only if the entity is active
there: not while it is being handed over (offered, or held on arrival),
not while it is still entering, not while the zone's process is down.
See C{docs/handoff.md}, "A session that ends mid-handoff".
"""

from __future__ import annotations

from collections import OrderedDict

from twisted.application import service
from twisted.internet import defer, error
from twisted.logger import Logger

from mmo import rpc
from mmo.game.messages import RelayedEvent, encode, zone_channel
from mmo.game.service import Caller
from mmo.unavailable import log_failure

#: Ended sessions a zone remembers (a bounded set: a stale one never
#: matches, since a newer session of a character has a new id).
ENDED_REMEMBERED = 10000


class EndedSessions:
    """
    The sessions that ended while their entity was not active in this zone
    (not here yet, offered, arriving, entering), the last C{remember} of
    them: when such an entity settles here, it leaves the world then.
    """

    def __init__(self, remember: int = ENDED_REMEMBERED):
        self.remember = remember
        self._sessions: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session: object) -> bool:
        return session in self._sessions

    def add(self, session: str) -> None:
        """C{session} ended; its entity was not taken out of the world here."""
        self._sessions[session] = None
        self._sessions.move_to_end(session)
        while len(self._sessions) > self.remember:
            self._sessions.popitem(last=False)

    def take(self, session: str | None) -> bool:
        """Whether C{session} ended (it is forgotten then: acted on once)."""
        if session not in self._sessions:
            return False
        del self._sessions[session]
        return True


def caller_of(entity) -> Caller:
    """The session of a player's entity, as the entity names it."""
    return Caller(entity.session, entity.gateway or "", "", entity.name, character_id=entity.id)


class SessionEnds:
    """
    A zone's side of the ends of its players' sessions: an entity whose
    session ended leaves the world once it is active here, and goes along
    with a handoff that completes first.

    @param name: The zone's name.
    @param get: The zone's real of an id, or C{None}.
    @param leave: Takes a real out of the world, saved; Deferred[bool]:
        False if it is not active here.
    @param publish: Publishes an encoded message on a bus channel.
    @ivar sessions: The L{EndedSessions} not acted on yet.
    """

    log = Logger()

    def __init__(self, name: str, get, leave, publish, remember: int = ENDED_REMEMBERED):
        self.name = name
        self.get = get
        self.leave = leave
        self.publish = publish
        self.sessions = EndedSessions(remember)

    async def ended(self, caller: Caller) -> None:
        """
        C{caller}'s session ended: its entity leaves now if it is active
        here, else when it settles here (L{settled}).  One that a newer
        session holds stays.
        """
        entity = self.get(caller.character_id)
        if entity is not None and entity.session != caller.session:
            return
        if entity is None or not await self.leave(entity):
            self.sessions.add(caller.session)

    def settled(self, entity_id: str) -> None:
        """A real became active here: if its session ended meanwhile, it leaves now."""
        entity = self.get(entity_id)
        if entity is None or not self.sessions.take(entity.session):
            return
        self.log.info(
            "zone {zone}: {id} settled here after its session ended; it leaves",
            zone=self.name,
            id=entity_id,
        )
        d = defer.ensureDeferred(self.leave(entity))
        d.addErrback(
            log_failure, self.log, "zone {zone}: {id} leaving", zone=self.name, id=entity_id
        )

    def handed_over(self, entity, owner: str) -> None:
        """
        A real was handed over to C{owner}: if its session ended while it
        was offered, the end goes along (as a L{RelayedEvent}), since that
        zone may not have heard of it (a process that ends the sessions of
        a dead gateway ends only those it holds).
        """
        if self.sessions.take(entity.session):
            event = RelayedEvent("", caller_of(entity).to_dict(), "ended")
            self.publish(zone_channel(owner), encode(event, self.name))


#: The failures of a session event that did not reach the zone's process:
#: no link (it is down, restarting), or the link dropped or timed out.
UNREACHABLE = (rpc.Unavailable, error.ConnectionLost, error.ConnectionDone, defer.TimeoutError)


class EndedResends(service.Service):
    """
    The C{"ended"} events a gateway could not deliver to a zone process
    (it is down: killed, being restarted by the manager), sent to it again,
    after C{first_delay} seconds and then twice as long each time (at most
    C{max_delay}), until it answers or C{give_up_after} seconds passed.
    At most C{max_pending} are kept (the oldest is dropped, with a
    warning).  Retries run while the service runs (a gateway's resource):
    stopping it drops them; the zones' L{mmo.game.gateways.GatewayWatch}
    ends the sessions of a gateway that stopped.

    @ivar clock: Provides C{callLater} and C{seconds}.
    """

    log = Logger()
    first_delay = 1.0
    max_delay = 10.0
    give_up_after = 120.0
    max_pending = 10000

    def __init__(self, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        #: (route, session) -> the delayed call of its next attempt.
        self._pending: OrderedDict[tuple, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def send(self, route, caller) -> defer.Deferred:
        """
        Tell C{route} that C{caller}'s session ended; if its zone process
        cannot be reached, again later.  Fires once told, or once the
        resends are scheduled; any other failure is the route's.
        """
        return self._attempt(route, caller, self.clock.seconds(), self.first_delay)

    def _attempt(self, route, caller, since: float, delay: float) -> defer.Deferred:
        d = defer.maybeDeferred(route.session_event, caller, "ended")

        def failed(failure):
            if not failure.check(*UNREACHABLE):
                return failure
            self._later(route, caller, since, delay, failure.getErrorMessage())
            return None

        return d.addErrback(failed)

    def _later(self, route, caller, since: float, delay: float, why: str) -> None:
        key = (route, caller.session)
        if not self.running:
            self.log.warn(
                "session {session} ended, and {route!r} cannot be told: {why}",
                session=caller.session,
                route=route,
                why=why,
            )
            return
        if self.clock.seconds() - since >= self.give_up_after:
            self.log.warn(
                "session {session} ended; {route!r} not told in {seconds:g} s, giving up: {why}",
                session=caller.session,
                route=route,
                seconds=self.give_up_after,
                why=why,
            )
            return
        if key not in self._pending and len(self._pending) >= self.max_pending:
            (old_route, old_session), call = self._pending.popitem(last=False)
            call.cancel()
            self.log.warn(
                "too many session ends to send again; {route!r} not told of {session}",
                route=old_route,
                session=old_session,
            )
        self.log.info(
            "session {session} ended; telling {route!r} again in {delay:g} s",
            session=caller.session,
            route=route,
            delay=delay,
        )

        def again():
            del self._pending[key]
            self._attempt(route, caller, since, min(delay * 2, self.max_delay)).addErrback(
                lambda f: self.log.failure("telling {route!r} of an end", f, route=route)
            )

        previous = self._pending.pop(key, None)
        if previous is not None:
            previous.cancel()
        self._pending[key] = self.clock.callLater(delay, again)

    def stopService(self):
        for call in self._pending.values():
            call.cancel()
        self._pending.clear()
        return super().stopService()
