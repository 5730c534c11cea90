"""
Player sessions on a gateway: what outlives a connection.

A L{Session} is made when a client is admitted (C{auth}).  It holds the
player's L{Caller}, the numbering of the pushes sent to the player, the last
pushes themselves (the I{outbox}: at most C{[gateway] resume_buffer} of
them and C{[gateway] resume_buffer_bytes} of their bodies, the oldest
dropped first) and the secret I{resume token} the client may present on a
new connection.

A session is in one of four states:

  - B{attached}: it has a connection; pushes are numbered, kept in the
    outbox and sent.
  - B{detached}: its connection dropped; for C{[gateway] resume_window}
    seconds pushes are still numbered and kept, so that a client that
    resumes (on this gateway or another) is sent exactly what it missed.
  - B{moved}: it was handed over to another gateway; this one forwards what
    is delivered for it there for a while (L{mmo.gateway.handover}).
  - B{ended}: gone for good (logout, replaced, bye, or the window ran out).

A session changes its own state (L{Session.attach}, L{Session.detach},
L{Session.end}, L{Session.hand_off}, L{Session.change}); this module knows
no bus and no routes: L{mmo.gateway.sessions.Sessions} drives the life cycle.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict

from mmo.compat import RecordWrites
from mmo.game.service import Caller
from mmo.gateway.outbox import Outbox
from mmo.login.tickets import Ticket
from mmo.metrics.registry import MESSAGES_SENT
from mmo.wire import codec
from mmo.wire.codes import FRAME_TOO_LARGE, WireError

#: Pushes sent as stems, encoded once for every session that gets them (a
#: zone's updates, a channel's chat): counted as one type, C{push}, since
#: the stem is never decoded to learn its own.
PUSHES_SENT = MESSAGES_SENT.labels("push")

ATTACHED = "attached"
DETACHED = "detached"
MOVED = "moved"
ENDED = "ended"


def new_token() -> str:
    """A fresh resume token: 32 random bytes, URL-safe base64."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """
    What a token is known by on the bus and in memory: its SHA-256, so that
    neither a bus key nor a log line is enough to resume somebody's session.
    """
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class ResumeRefused(Exception):
    """
    A resume cannot be granted.

    @ivar reason: Why, for the client (the C{resume_refused} message).
    @ivar final: Whether the session can never be resumed any more (the
        client missed more than the outbox holds), so it should end.
    """

    def __init__(self, reason: str, final: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.final = final


class Session:
    """
    One player's session on this gateway.

    @ivar caller: Who the player is, as services see it (the gateway field
        is this process's name).
    @ivar ticket: The ticket the session was admitted with.
    @ivar token: The current resume token (each resume issues a new one).
    @ivar seq: The sequence number of the last push.
    @ivar outbox: The last pushes, oldest first, numbered C{oldest_kept}
        onwards: their stems (L{codec.push_stem}), encoded as sent (a tenth
        of the memory of the message each encodes, replayed without encoding
        again); a push to many sessions is one stem kept by each of them.
        An L{Outbox}, made on the first push (an empty tuple until then).
    @ivar buffer: The most pushes the outbox keeps.
    @ivar buffer_bytes: The most bytes of bodies the outbox keeps (the
        newest push is kept even when it alone is larger).
    @ivar connection: The attached L{mmo.gateway.protocol.GatewayProtocol},
        or C{None}.
    @ivar state: L{ATTACHED}, L{DETACHED}, L{MOVED} or L{ENDED}.
    @ivar expiry: The timer that ends a detached session, if any.
    @ivar limit: The largest push body, bytes (C{[wire] max_frame_size}).
    """

    # A gateway holds one per player: no per-instance dict.
    __slots__ = (
        "caller",
        "ticket",
        "token",
        "token_hash",
        "seq",
        "buffer",
        "buffer_bytes",
        "outbox",
        "limit",
        "connection",
        "state",
        "expiry",
    )

    def __init__(
        self,
        caller: Caller,
        ticket: Ticket,
        token: str,
        buffer: int,
        limit: int,
        seq: int = 0,
        pushes=(),
        buffer_bytes: int | None = None,
    ):
        self.caller = caller
        self.ticket = ticket
        self.token = token
        self.token_hash = token_hash(token)
        self.seq = seq
        self.buffer = buffer
        self.buffer_bytes = buffer_bytes
        self.outbox: Outbox | tuple = ()
        for stem in _stems(pushes):
            self._keep(stem)
        self.limit = limit
        self.connection = None
        self.state = DETACHED
        self.expiry = None

    def __repr__(self) -> str:
        return f"<Session {self.id} of {self.caller.name} {self.state} seq={self.seq}>"

    @property
    def id(self) -> str:
        return self.caller.session

    @property
    def account(self) -> str:
        return self.caller.account_id

    @property
    def live(self) -> bool:
        """Whether it is held here: attached or detached."""
        return self.state == ATTACHED or self.state == DETACHED

    # -- life cycle -----------------------------------------------------------

    def attach(self, connection):
        """
        Make C{connection} the session's connection; returns the connection
        it had until now, if another (to be told goodbye), else C{None}.
        """
        old = self.connection
        self._stop_expiry(None)
        self.connection = connection
        self.state = ATTACHED
        return old if old is not connection else None

    def detach(self, expiry=None) -> None:
        """
        Keep the session without a connection; C{expiry} (a delayed call)
        ends it when the resume window runs out.
        """
        self._stop_expiry(expiry)
        self.connection = None
        self.state = DETACHED

    def expired(self) -> bool:
        """Its expiry fired: whether it is still detached (and so ends now)."""
        self.expiry = None
        return self.state == DETACHED

    def end(self):
        """Gone for good; returns the connection it had, if any."""
        return self._leave(ENDED)

    def hand_off(self):
        """Handed over to another gateway; returns the connection it had, if any."""
        return self._leave(MOVED)

    def change(self, change) -> None:
        """Apply a service's L{mmo.game.service.SessionChange} to the caller."""
        self.caller = change.apply(self.caller)

    def _leave(self, state: str):
        self._stop_expiry(None)
        connection, self.connection = self.connection, None
        self.state = state
        return connection

    def _stop_expiry(self, replacement) -> None:
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        self.expiry = replacement

    # -- tokens ---------------------------------------------------------------

    def renew_token(self) -> str:
        """Spend the current token and issue a new one; returns the new one."""
        self.token = new_token()
        self.token_hash = token_hash(self.token)
        return self.token

    # -- pushes -----------------------------------------------------------------

    def push(self, kind: str, fields: dict) -> int:
        """
        Number a push, keep it in the outbox and, when attached, send it;
        returns its sequence number.

        @raise WireError: C{frame_too_large}: the push could never be sent;
            it takes no sequence number.
        @raise TypeError: A field msgpack cannot encode.
        """
        return self.push_stem(codec.push_stem(kind, fields))

    def push_stem(self, stem: bytes) -> int:
        """
        L{push} a push encoded once for many sessions (L{codec.push_stem}):
        the outbox keeps the shared stem, the number is spliced in as sent.

        @raise WireError: C{frame_too_large}, as L{push}.
        """
        for _, failure in Session.push_stem_to((self,), stem):
            raise failure
        return self.seq

    @classmethod
    def push_stem_to(cls, sessions, stem: bytes) -> list[tuple[Session, Exception]]:
        """
        L{push_stem} one stem to each of C{sessions}, in one loop: a chat
        message to a channel is one stem for hundreds of sessions, and a
        call per session and per step (number, keep, splice, send) cost as
        much again as the sending (C{bench/chat_fanout.py}).

        @param sessions: The sessions, each pushed the stem in turn.
        @return: The sessions whose push failed, each with its exception
            (a C{frame_too_large} L{WireError}: not numbered; or what
            sending raised: numbered and kept, as L{push_stem} does); the
            others are pushed whatever the failures.
        """
        failed = []
        size = len(stem)
        sent = 0
        for session in sessions:
            if size > session.limit:
                failed.append((session, _too_large(size, session.limit)))
                continue
            seq = session.seq = session.seq + 1
            outbox = session.outbox
            if type(outbox) is tuple:
                outbox = session.outbox = Outbox()
            outbox.keep(stem, session.buffer, session.buffer_bytes)
            connection = session.connection
            if connection is not None and connection.canSend():
                try:
                    connection.sendFrame(codec.numbered(stem, seq))
                    sent += 1
                except Exception as e:
                    failed.append((session, e))
        PUSHES_SENT.inc(sent)
        return failed

    @classmethod
    def push_stems_to(cls, pushes, made_here: bool = False) -> list[tuple[Session, Exception]]:
        """
        Push each session its stems of a zone's tick (made by the zone
        process) or of a run of pushes from the bus, in order, in one loop
        for all: each stem checked (L{codec.check_stem}), numbered and kept
        as L{push_stem} does, and a session's frames sent in one write that
        leaves at once (C{sendFramesNow}): one TLS record and one C{send()}
        per connection, with no delayed call.  The writes that can are
        queued (C{sendFramesWith}) and leave together after the loop, in
        order, in one compiled loop over their connections (L{RecordWrites}).

        @param pushes: C{(session, stems)} pairs.
        @param made_here: The stems were made by this process
            (L{codec.push_stem}): not checked again.
        @return: The stems that failed, each as C{(session, exception)}: a
            stem that is not one (C{ValueError}) or is over the session's
            frame limit (a C{frame_too_large} L{WireError}) is not numbered;
            what sending raised (the session's stems numbered and kept) is
            one failure for all its frames.  The other stems are pushed
            whatever the failures.
        """
        failed = []
        sent = 0
        check = None if made_here else codec.check_stem
        numbered = codec.numbered
        # None where the compiled loop is not built: each write as before.
        writes = RecordWrites() if RecordWrites.compiled else None
        # Each write queued in writes: its session, its frame count and
        # where its failure, if any, goes in the list (after its stems').
        queued = []
        try:
            for session, stems in pushes:
                frames = []
                add = frames.append
                seq = session.seq
                limit = session.limit
                outbox = session.outbox
                if type(outbox) is tuple:
                    outbox = session.outbox = Outbox()
                keep = outbox.keep
                most, most_bytes = session.buffer, session.buffer_bytes
                for stem in stems:
                    if check is not None:
                        try:
                            check(stem)
                        except ValueError as e:
                            failed.append((session, e))
                            continue
                    size = len(stem)
                    if size > limit:
                        failed.append((session, _too_large(size, limit)))
                        continue
                    seq += 1
                    keep(stem, most, most_bytes)
                    add(numbered(stem, seq))
                if not frames:
                    continue
                session.seq = seq
                connection = session.connection
                if connection is not None and connection.canSend():
                    data = frames[0] if len(frames) == 1 else b"".join(frames)
                    try:
                        if writes is None:
                            connection.sendFramesNow(data)
                        elif connection.sendFramesWith(data, writes, len(queued)):
                            queued.append((session, len(frames), len(failed)))
                        sent += len(frames)
                    except Exception as e:
                        failed.append((session, e))
        finally:
            # Sent whatever happens: what is queued is numbered and kept.
            failures = writes.send() if queued else ()
        # A write that failed as it was finished counts as not sent, its
        # failure in the place it would have had; the latest first, so that
        # each place is still right.
        for index, failure in reversed(failures):
            session, count, place = queued[index]
            failed.insert(place, (session, failure))
            sent -= count
        PUSHES_SENT.inc(sent)
        return failed

    def _keep(self, stem: bytes) -> None:
        """Keep a push's stem for a resume; drop the oldest past either bound."""
        outbox = self.outbox
        if type(outbox) is tuple:
            outbox = self.outbox = Outbox()
        outbox.keep(stem, self.buffer, self.buffer_bytes)

    @property
    def outbox_bytes(self) -> int:
        """The size of the bodies in the outbox, bytes."""
        return self.outbox.size if self.outbox else 0

    @property
    def oldest_kept(self) -> int:
        """The sequence number of the oldest push in the outbox (C{seq + 1} if none)."""
        return self.seq - len(self.outbox) + 1

    def missed(self, last_seq: int) -> list[bytes]:
        """
        The pushes after C{last_seq}, oldest first, as encoded bodies.

        @raise ResumeRefused: C{last_seq} is ahead of the session, or some of
            the pushes after it are no longer in the outbox (I{final}).
        """
        if last_seq > self.seq:
            raise ResumeRefused(
                f"last_seq {last_seq} is ahead of the session, which has sent {self.seq} pushes"
            )
        oldest = self.oldest_kept
        if last_seq + 1 < oldest:
            raise ResumeRefused(
                f"missed too much: push {last_seq + 1} is no longer kept (the oldest kept is "
                f"{oldest}; the resume buffer holds {self.buffer} pushes"
                + (f" and {self.buffer_bytes} bytes" if self.buffer_bytes is not None else "")
                + "); log in again",
                final=True,
            )
        if last_seq == self.seq:
            return []
        return [
            codec.numbered_body(stem, last_seq + 1 + i)
            for i, stem in enumerate(self.outbox.newest(self.seq - last_seq))
        ]

    # -- handover -----------------------------------------------------------------

    def state_for(self, last_seq: int) -> dict:
        """
        What another gateway needs to carry the session on (L{from_state}):
        the caller, the ticket, the token, the numbering and the pushes after
        C{last_seq} (encoded bodies, the last one numbered C{seq}).

        @raise ResumeRefused: As L{missed}.
        """
        return {
            "caller": self.caller.to_dict(),
            "ticket": asdict(self.ticket),
            "token": self.token,
            "seq": self.seq,
            "pushes": self.missed(last_seq),
        }

    @classmethod
    def from_state(
        cls,
        state: dict,
        gateway: str,
        buffer: int,
        limit: int,
        incarnation: str = "",
        buffer_bytes: int | None = None,
    ) -> Session:
        """
        The session described by L{state_for}, now held by C{gateway} (as
        its C{incarnation}).

        @raise KeyError, TypeError, ValueError: C{state} is malformed.
        """
        caller = Caller.from_dict(state["caller"]).moved(gateway=gateway, incarnation=incarnation)
        ticket = Ticket(**state["ticket"])
        seq = int(state["seq"])
        pushes = list(state["pushes"])
        if not all(isinstance(p, (bytes, dict)) for p in pushes):
            raise TypeError("pushes")
        if not isinstance(state["token"], str):
            raise TypeError("token")
        return cls(caller, ticket, state["token"], buffer, limit, seq, pushes, buffer_bytes)


def _too_large(size: int, limit: int) -> WireError:
    return WireError(FRAME_TOO_LARGE, f"push of {size} bytes is over the limit of {limit}")


def _stems(pushes) -> list[bytes]:
    """
    The stems of handed-over C{pushes}: encoded bodies, or messages (as a
    gateway of an earlier version hands them over), each with its C{seq}.

    @raise ValueError, TypeError: A push is neither.
    """
    stems = []
    for push in pushes:
        if isinstance(push, bytes):
            try:
                push = codec.decode(push, strict=False)
            except WireError as e:
                raise ValueError(f"a handed-over push: {e.message}") from None
        stems.append(codec.push_stem(push["t"], push))
    return stems
