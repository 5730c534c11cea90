"""
What game services send a gateway's players: L{Push} (a service's push to
some sessions), L{PushStems} (a zone's tick, encoded by the zone) and
L{PushBatch} (a zone's tick, from an older zone), pushed to each session
held here (sent when attached, kept when detached), forwarded to the gateway
a session moved to; and the messages routes hear about one session
(L{Delivery.addressed}).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.messages import Push, PushBatch, PushStems, gateway_channel
from mmo.game.service import SessionChange
from mmo.gateway.handover import Forwards
from mmo.gateway.session import Session
from mmo.gateway.sessions import Sessions, log_failure
from mmo.wire import codec
from mmo.wire.codes import WireError


class SessionPort:
    """
    One session held here, as a route sees it in a message about it: its
    caller, a change of it (every service is told), a push to its client.
    """

    log = Logger()

    def __init__(self, sessions: Sessions, session):
        self._sessions = sessions
        self._session = session

    @property
    def caller(self):
        return self._session.caller

    def change(self, change: SessionChange) -> defer.Deferred:
        return defer.ensureDeferred(self._sessions.change(self._session, change))

    def push(self, kind: str, fields: dict) -> None:
        try:
            self._session.push(kind, fields)
        except Exception:
            self.log.failure("push {kind!r} dropped", kind=kind)


class Delivery:
    """Pushes from game services to the sessions held by one gateway."""

    log = Logger()

    def __init__(self, sessions: Sessions, forwards: Forwards, bus):
        self.sessions = sessions
        self.forwards = forwards
        self.bus = bus

    def push(self, sender: str, push: Push) -> defer.Deferred | None:
        """
        Push C{push.kind} with C{push.fields} to every session listed:
        sent when attached, kept when detached, forwarded to the gateway a
        session moved to (L{push_run} of one push).
        """
        return self.push_run([(sender, push)])

    def push_run(self, pushes: list[tuple[str, Push]]) -> defer.Deferred | None:
        """
        L{push} each of C{pushes} (C{(sender, push)} pairs, in the order
        they came), in one loop over the sessions held here: each session's
        stems of all the pushes numbered and kept in order, and its
        connection's frames sent in one write that leaves at once
        (L{Session.push_stems_to}).  A run of chat messages to a channel
        costs one write per connection, and the first connections' frames
        leave while the others' are made, where a push at a time wrote to
        every connection once per push and sent it all at the end of the
        reactor's turn.  Sessions that moved to another gateway are
        forwarded there, one push per push and gateway, in order.
        """
        stems_of: dict[Session, list[bytes]] = {}
        onward: list[tuple[str, Push]] = []
        find = self.sessions.registry.by_id.get
        for sender, push in pushes:
            targets, kind, fields = push.sessions, push.kind, push.fields
            if not (
                isinstance(targets, list) and isinstance(kind, str) and isinstance(fields, dict)
            ):
                self.log.warn("malformed push from {sender}", sender=sender or "?")
                continue
            try:
                # Encoded once, numbered per session as sent.
                stem = codec.push_stem(kind, fields)
            except Exception:
                self.log.failure(
                    "push {kind!r} from {sender} dropped", kind=kind, sender=sender or "?"
                )
                continue
            elsewhere: dict[str, list[str]] = {}
            for session_id in targets:
                session = find(session_id)
                if session is not None:
                    stems = stems_of.get(session)
                    if stems is None:
                        stems_of[session] = [stem]
                    else:
                        stems.append(stem)
                    continue
                gateway = self.forwards.gateway(session_id)
                if gateway is not None:
                    elsewhere.setdefault(gateway, []).append(session_id)
            onward.extend((gateway, Push(ids, kind, fields)) for gateway, ids in elsewhere.items())
        # A run's pushes may come from several senders: none is named.
        self._log_failed(None, Session.push_stems_to(stems_of.items(), made_here=True))
        return self._send_on(onward)

    def _log_failed(self, sender: str | None, failed: list) -> None:
        """
        Log the stems L{Session.push_stems_to} could not push: one over a
        session's limit or not a stem with a warning, anything else with
        its traceback.
        """
        for session, failure in failed:
            if isinstance(failure, (ValueError, WireError)):
                self.log.warn(
                    "a push from {sender} to {name} dropped: {why}",
                    sender=sender or "?",
                    name=session.caller.name,
                    why=getattr(failure, "message", None) or str(failure),
                )
            else:
                self.log.failure(
                    "a push from {sender} to {name} dropped",
                    Failure(failure),
                    sender=sender or "?",
                    name=session.caller.name,
                )

    def push_batch(self, sender: str, batch: PushBatch) -> defer.Deferred | None:
        """
        Push each session's events of a zone's tick, in order: sent when
        attached, kept when detached, forwarded (as one batch per gateway)
        for sessions that moved to another gateway.
        """
        if not isinstance(batch.pushes, dict):
            self.log.warn("malformed push batch from {sender}", sender=sender or "?")
            return None
        held, onward = self._split(sender, batch.pushes)
        for session, events in held:
            for event in events:
                if not (
                    isinstance(event, (list, tuple))
                    and len(event) == 2
                    and isinstance(event[0], str)
                    and isinstance(event[1], dict)
                ):
                    self.log.warn("malformed batched push: {event!r}", event=event)
                    continue
                self._push(session, event[0], event[1])
        return self._send_on({gateway: PushBatch(pushes) for gateway, pushes in onward.items()})

    def push_stems(self, sender: str, batch: PushStems) -> defer.Deferred | None:
        """
        Push each session's stems of a zone's tick, in order, as they are
        (numbered, not decoded): sent when attached, kept when detached,
        forwarded (as stems, one batch per gateway) for sessions that
        moved to another gateway.  A stem that is not one
        (L{codec.check_stem}), or is over the session's frame limit, is
        dropped with a log line; the rest go on.
        """
        if not isinstance(batch.pushes, dict):
            self.log.warn("malformed push stems from {sender}", sender=sender or "?")
            return None
        held, onward = self._split(sender, batch.pushes)
        self._log_failed(sender, Session.push_stems_to(held))
        return self._send_on({gateway: PushStems(pushes) for gateway, pushes in onward.items()})

    def _split(self, sender: str, pushes: dict) -> tuple[list, dict[str, dict]]:
        """
        A zone's tick of pushes by session id, split: C{(session, items)}
        for each session held here, and C{{gateway: {session id: items}}}
        for sessions that moved to another gateway.  A session's entry that
        is not a list is dropped with a log line.
        """
        held: list = []
        onward: dict[str, dict] = {}
        for session_id, items in pushes.items():
            if not isinstance(items, list):
                self.log.warn("malformed pushes from {sender}", sender=sender or "?")
                continue
            session = self.sessions.get(session_id)
            if session is not None:
                held.append((session, items))
                continue
            gateway = self.forwards.gateway(session_id)
            if gateway is not None:
                onward.setdefault(gateway, {})[session_id] = items
        return held, onward

    def _push(self, session, kind: str, fields: dict) -> None:
        try:
            session.push(kind, fields)
        except Exception:
            self._dropped(session, kind)

    def _dropped(self, session, kind: str, failure: Failure | None = None) -> None:
        self.log.failure(
            "push {kind!r} to {name} dropped", failure, kind=kind, name=session.caller.name
        )

    def _send_on(self, to_gateways) -> defer.Deferred | None:
        """
        Publish each message of C{to_gateways} (a dict, or C{(gateway,
        message)} pairs) to its gateway, in order.
        """
        if isinstance(to_gateways, dict):
            to_gateways = to_gateways.items()
        published = [
            messages.publish(
                self.bus, gateway_channel(gateway), message, self.sessions.name
            ).addErrback(log_failure, self.log, "forwarding a delivery failed")
            for gateway, message in to_gateways
        ]
        return defer.gatherResults(published) if published else None

    def addressed(self, handler: Callable) -> Callable:
        """
        A handler of bus messages about one session (they have a
        C{session} field), for a route: C{handler(sender, message, port)}
        is called with a L{SessionPort} of the session held here, or with
        C{None} if it is not; a message about a session that moved to
        another gateway is sent on there instead.
        """

        def received(sender: str, message):
            session_id = message.session
            session = self.sessions.get(session_id)
            if session is None:
                gateway = self.forwards.gateway(session_id)
                if gateway is not None:
                    return messages.publish(
                        self.bus, gateway_channel(gateway), message, sender
                    ).addErrback(log_failure, self.log, "forwarding a message failed")
                return handler(sender, message, None)
            return handler(sender, message, SessionPort(self.sessions, session))

        return received
