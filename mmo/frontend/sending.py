"""
How a client connection sends: frames, messages, pushes, error frames and
the goodbye, with the bound on what its client leaves unread
(L{mmo.frontend.backlog.SendBacklog}).  L{FrameSending} is a part of
L{mmo.frontend.protocol.ClientProtocol}, apart from its receiving and
dispatching.
"""

from __future__ import annotations

from mmo.wire import codec, codes
from mmo.wire.codes import WireError

#: The most frames a read's handling gathers before sending them: a read
#: of many requests is answered in parts, each in one write.
GATHERED_MOST = 64

# Connection states.
HANDSHAKE = "handshake"
OPEN = "open"
CLOSED = "closed"


class FrameSending:
    """
    Mixin of L{mmo.frontend.protocol.ClientProtocol}, before its
    L{mmo.wire.protocol.FramedProtocol}: the sending side of a connection.
    Messages are encoded and counted by the protocol's C{sendMessage}.
    It reads the protocol's C{transport}, C{backlog}, C{state},
    C{closing}, C{seq}, C{MAX_LENGTH}, C{peer}, C{factory} and C{log},
    and closes with its C{_close}.
    """

    def wireError(self, error: WireError, request_id) -> None:
        """Answer a protocol error with an error frame; close when fatal."""
        if self.state == CLOSED or self.closing:
            return
        if error.fatal:
            self.log.warn(
                "closing {peer}: {code}: {message}",
                peer=self.peer,
                code=error.code,
                message=error.message,
            )
            self.closing = True
        else:
            self.log.info(
                "{peer}: {code}: {message}", peer=self.peer, code=error.code, message=error.message
            )
        frame = {
            "t": "error",
            "id": request_id,
            "code": error.code,
            "message": error.message,
            "fatal": error.fatal,
        }
        if error.retry_after is not None:
            frame["retry_after"] = error.retry_after
        try:
            self.sendMessage(frame)
        except WireError:
            # The message (which may quote the client's input) made the frame
            # too large: cut it to fit (the frame without it always fits).
            room = self.MAX_LENGTH - len(codec.encode({**frame, "message": ""})) - 4
            frame["message"] = error.message.encode()[: max(room, 0)].decode(errors="ignore")
            self.sendMessage(frame)
        if error.fatal:
            self._close()

    def fail(self, error: WireError) -> None:
        """Report C{error} (not tied to a request) to the client."""
        self.wireError(error, None)

    def sendString(self, string: bytes) -> None:
        self.sendFrame(codec.HEADER.pack(len(string)) + string)

    #: While a read of the connection is handled (L{gatherFrames} to
    #: L{sendGathered}): the frames it made so far, to leave in one write
    #: at its end.  C{None} otherwise.
    _gathered: list[bytes] | None = None

    def gatherFrames(self) -> bool:
        """
        From now until L{sendGathered}, frames sent by L{sendFrame} wait and
        leave together, in one write sent at once: the replies to a read's
        requests (every player's inputs are answered as they are read), in
        one TLS record and one C{send()}, without the reactor's end-of-turn
        gathering (a delayed call per connection per turn, and the write's
        generic path).  Every L{GATHERED_MOST} frames what is gathered is
        sent and gathering goes on; while the client is behind (the backlog
        counting), each frame is written and counted as it is made, as
        always.  Whether it began: C{False} while already gathering.
        """
        if self._gathered is not None:
            return False
        self._gathered = []
        return True

    def sendGathered(self) -> None:
        """Send what was gathered since L{gatherFrames}, and stop gathering."""
        self.flushGathered()
        self._gathered = None

    def flushGathered(self) -> None:
        """Send what was gathered so far now (before a close), and go on gathering."""
        if self._gathered:
            self.sendFramesNow(self._takeGathered())

    def _takeGathered(self, frames: bytes = b"") -> bytes:
        """What was gathered, then C{frames}, in one string; nothing is left gathered."""
        gathered = self._gathered
        if frames:
            gathered.append(frames)
        taken = gathered[0] if len(gathered) == 1 else b"".join(gathered)
        gathered.clear()
        return taken

    def sendFrame(self, frame: bytes) -> None:
        """
        Send one frame, its length header included, in one write, gathered
        with the connection's other writes of this reactor turn (or of the
        read being handled: L{gatherFrames}).
        """
        gathered = self._gathered
        if gathered is not None:
            backlog = self.backlog
            if backlog is None or not backlog.paused:
                gathered.append(frame)
                if len(gathered) >= GATHERED_MOST:
                    self.flushGathered()
                return
            # The client is behind: what was gathered goes first, then this
            # frame as always, counted.
            self.flushGathered()
        self.transport.write(frame)
        backlog = self.backlog
        # The backlog counts only while the transport is full.
        if backlog is not None and backlog.paused:
            backlog.wrote(len(frame))

    def sendFramesNow(self, frames: bytes) -> None:
        """
        Send whole frames (one or more, each with its length header) in one
        write that leaves now: with what the connection was written earlier
        in this turn first, in one TLS record and one C{send()}, without
        waiting for the end of the turn.  For a caller that has written
        all the connection gets this turn (a delivery of a zone's tick):
        the turn's gathering, a delayed call per connection, is saved.  A
        transport that cannot write at once (WebSocket's, a test's) is
        written as by L{sendFrame}.
        """
        if self._gathered:
            frames = self._takeGathered(frames)
        transport = self.transport
        backlog = self.backlog
        # Counted as sendFrame counts: while the transport was already full
        # (a gathered write could not pause it; this one may, and is not
        # counted for it).
        counted = backlog is not None and backlog.paused
        write_now = getattr(transport, "writeNow", None)
        if write_now is not None:
            write_now(frames)
        else:
            transport.write(frames)
        if counted:
            backlog.wrote(len(frames))

    def sendFramesWith(self, frames: bytes, writes, tag) -> bool:
        """
        L{sendFramesNow}, or the frames queued in C{writes} (an
        L{mmo.compat.RecordWrites}, C{tag} naming them there) to leave with
        other connections' when it is sent: where the transport would write
        them as one TLS record sent at once, and the backlog is not
        counting (a write it counts is made now, counted as it is made).
        Whether they were queued.
        """
        if self._gathered:
            frames = self._takeGathered(frames)
        backlog = self.backlog
        if (backlog is None or not backlog.paused) and writes.add(self.transport, frames, tag):
            return True
        self.sendFramesNow(frames)
        return False

    def unreadOverflow(self, unsent: int) -> None:
        """
        The client has left more than C{[listeners] max_unsent} bytes
        unread: say goodbye (C{slow_reader}) and close, as after any drop
        (a gateway keeps the session for a resume).  Nothing more is
        written (L{canSend} is false from now on), nothing more is read (a
        client that floods requests costs nothing more), and the connection
        is aborted if it is not closed within
        L{mmo.frontend.protocol.CLOSE_GRACE} seconds.
        """
        self.log.warn(
            "closing {peer}: {code}: {unsent} bytes unread",
            peer=self.peer,
            code=codes.SLOW_READER,
            unsent=unsent,
        )
        self.transport.pauseProducing()
        self.goodbye(
            codes.SLOW_READER,
            f"more than {self.factory.config.listeners.max_unsent} bytes left unread",
        )

    def push(self, kind: str, **fields) -> int:
        """
        Send a server push of type C{kind}; returns its sequence number.
        Sequence numbers start at 1 and grow by one per push, so a client
        that resumes can say which it saw last.  (On a gateway, an admitted
        connection's pushes are numbered by its session instead, so that
        the numbering survives a reconnect: see L{GatewayProtocol.push}.)

        @raise WireError: C{frame_too_large}: the push would be over the
            frame limit; nothing is sent and no number is used.
        """
        seq = self.seq + 1
        self.sendMessage({**fields, "t": kind, "seq": seq})
        self.seq = seq
        return seq

    def canSend(self) -> bool:
        """Whether frames may still be sent: open, and no goodbye or fatal error sent."""
        return self.state != CLOSED and not self.closing

    def goodbye(self, code: str, message: str, **fields) -> None:
        """
        Tell the client why it is being closed, then close.  C{fields} go
        into the goodbye frame too (C{moved} names the gateway to resume on).
        """
        if self.state == CLOSED or self.closing:
            return
        self.closing = True
        self.log.info("goodbye {peer}: {code}", peer=self.peer, code=code)
        self.sendMessage({**fields, "t": "bye", "code": code, "message": message})
        self._close()
