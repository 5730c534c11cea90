"""
The Python client SDK: connect to an mmo server over TLS, verify it,
handshake, make requests and receive pushes.

    from twisted.internet import defer, task
    from mmo.client import connect

    async def main(reactor):
        client = await connect(reactor, "localhost", 7000, ca="certs/ca.crt")
        client.on("chat", lambda push: print(push["text"]))
        reply = await client.request("ping")
        print("server time", reply["time"])
        await client.close()

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))

To carry a session over a dropped connection, keep C{client.resumption()}
(the resume token from C{auth} and the last push seen) and connect again
with it; the pushes missed in between arrive first, in order, once each::

    token, last_seq = client.resumption()
    client = Client()
    client.on("chat", show)                 # before: replayed pushes come at once
    await connect(reactor, host, port, ca=ca, client=client, resume=(token, last_seq))

The SDK answers the server's C{heartbeat} frames with C{pong} by itself,
and follows a draining gateway's C{session.move} by itself: a client made
by L{connect} reconnects to the gateway named, resumes its session there
and calls its C{on("moved")} handlers (C{docs/client.md}).

What a client has in view of the world is kept from its C{world.update}
pushes by a L{WorldView} (C{client.on("world.update", view.apply)}), which
honours the C{reset} a restarted zone sends.

C{docs/client.md} documents the API (sessions: C{docs/sessions.md}); the
tests, the bots and game clients written in Python all use it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

import mmo
from mmo.client.reading import WholeFramesProtocol
from mmo.client.tls import ResumingTLS, StdlibTLS, client_tls_options
from mmo.client.view import WorldView
from mmo.wire.codec import SUPPORTED_VERSIONS
from mmo.wire.codes import WireError

__all__ = [
    "Client",
    "ConnectionClosed",
    "ResumingTLS",
    "ServerError",
    "StdlibTLS",
    "WorldView",
    "client_tls_options",
    "connect",
]


class ServerError(WireError):
    """
    The server answered a request with an error frame: C{code} is the
    stable error code (see C{docs/protocol.md}), C{message} the server's
    explanation and C{fatal} whether the server closes the connection after it.
    """


class ConnectionClosed(Exception):
    """
    The connection closed before a reply came.

    @ivar code: The server's goodbye code, if it said goodbye, else C{None}.
    @ivar message: Its goodbye message, or why the connection ended.
    """

    def __init__(self, code: str | None, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.code else self.message


class _Outcome:
    """A result many can wait for: each waiter gets its own Deferred."""

    def __init__(self):
        self._waiters: list[defer.Deferred] = []
        self.done = False
        self._result = None

    def when(self) -> defer.Deferred:
        if self.done:
            if isinstance(self._result, Failure):
                return defer.fail(self._result)
            return defer.succeed(self._result)
        d = defer.Deferred()
        self._waiters.append(d)
        return d

    def fire(self, result) -> None:
        if self.done:
            return
        self.done, self._result = True, result
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(result)


class Client(WholeFramesProtocol):
    """
    One connection to an mmo server (a protocol: subclass it to add
    behaviour, and pass the subclass to L{connect}).

    @ivar welcome: The server's handshake reply.
    @ivar last_seq: The sequence number of the last push received.
    @ivar goodbye: The server's goodbye frame, if it sent one.
    @ivar session: The session id, once admitted (C{auth}) or resumed.
    @ivar resume_token: The token to resume the session with after a drop
        (from the C{auth} or C{resume} reply; each resume issues a new one).
    @ivar refresh_token: The device's refresh token from the last L{login}
        that gave one (shown once by the server: keep it, and replace it
        with each new one), or C{None}.
    @ivar answer_heartbeats: Whether to answer the server's C{heartbeat}
        frames with C{pong} (turn off only to test a server's timeout).
    @ivar follow_moves: Whether to follow a draining gateway's
        C{session.move} (reconnect there and resume) by itself.
    @ivar move_target: The last C{session.move} frame received (C{gateway},
        C{host}, C{port}, maybe C{websocket}), until it is followed.
    @ivar connector: How to connect this same client to another address for
        a move: C{connector(host, port)} returns a Deferred that fires once
        connected.  L{connect} sets it; C{None} means moves are not followed
        (the client then closes with goodbye C{moved} as for any goodbye).
    @ivar clock: The reactor timing a move (set by L{connect}).
    @ivar move_timeout: Seconds a move may take (connect, handshake, resume).
    """

    log = Logger()
    name = f"mmo-python/{mmo.__version__}"
    # The server is verified (TLS) and speaks this protocol: its frames are
    # checked for shape, not every nested value (a third of the cost of
    # reading a world.update).
    strict = False

    def __init__(self, versions=SUPPORTED_VERSIONS, max_frame_size: int = 16 * 1024 * 1024):
        self.versions = list(versions)
        # Until the server says its own limit, accept what any server may send.
        self.MAX_LENGTH = max_frame_size
        self._ready = _Outcome()
        self._closed = _Outcome()
        self.welcome: dict | None = None
        self.last_seq = 0
        self.goodbye: dict | None = None
        self.session: str | None = None
        self.resume_token: str | None = None
        self.refresh_token: str | None = None
        self.answer_heartbeats = True
        self.follow_moves = True
        self.move_target: dict | None = None
        self.connector: Callable[[str, int], defer.Deferred] | None = None
        self.clock = None
        self.move_timeout = 10.0
        self._moving = False
        self._close_after_move = False
        self._queued: list[tuple[defer.Deferred | None, str, dict]] = []
        self._next_id = 0
        self._pending: dict[int, defer.Deferred] = {}
        self._handlers: dict[str, list[Callable[[dict], object]]] = defaultdict(list)

    # -- public API ----------------------------------------------------------

    def request(self, _type: str, /, **fields) -> defer.Deferred:
        """
        Send a request of type C{_type} with C{fields}; the result fires with
        the reply's fields (a dict), or fails with L{ServerError} or
        L{ConnectionClosed}.  Add a timeout with C{d.addTimeout(s, reactor)}.

        While the client follows a C{session.move}, requests wait and are
        sent once the session is resumed on the new gateway (they fail with
        L{ConnectionClosed} C{moved} if the move fails).
        """
        if self._moving and _type not in ("hello", "resume"):
            d = defer.Deferred()
            self._queued.append((d, _type, fields))
            return d
        if self.closing or self.transport is None:
            return defer.fail(ConnectionClosed(None, "the connection is closed"))
        self._next_id += 1
        request_id = self._next_id
        d = defer.Deferred(lambda d: self._pending.pop(request_id, None))
        if _type in ("auth", "resume"):
            # Before the caller's callbacks: the token is kept whatever they do.
            d.addCallback(self._admitted)
        self._pending[request_id] = d
        try:
            self.sendMessage({**fields, "t": _type, "id": request_id})
        except Exception:
            del self._pending[request_id]
            return defer.fail()
        return d

    def login(
        self,
        name: str | None = None,
        password: str | None = None,
        *,
        refresh: str | None = None,
        device: str | None = None,
        realm: str | None = None,
    ) -> defer.Deferred:
        """
        Log in (to a login server, or a standalone one) with C{name} and
        C{password}, or with the C{refresh} token of C{device}, which costs
        the server no password hash.  A password login with C{device} (a
        label the client chooses and keeps, say a random id made at
        install) asks for a refresh token.  Fires with the reply (C{ticket},
        C{gateway}, ...; C{refresh} when one was given, also kept in
        L{refresh_token}), or fails with L{ServerError}: C{refresh_refused}
        means the token is spent, revoked or expired (log in with the
        password then).  Each refresh token works once: store the new one.
        """
        fields: dict = {} if realm is None else {"realm": realm}
        if refresh is not None:
            if device is None:
                raise ValueError("a refresh token login needs the token's device")
            fields.update(refresh=refresh, device=device)
        else:
            fields.update(name=name, password=password)
            if device is not None:
                fields.update(remember=True, device=device)
        return self.request("login", **fields).addCallback(self._logged_in)

    def _logged_in(self, reply: dict) -> dict:
        token = reply.get("refresh")
        if isinstance(token, str):
            self.refresh_token = token
        return reply

    def logout(self, ticket: str | None = None, device: str | None = None) -> defer.Deferred:
        """
        Log out.  To a login server, with the session's C{ticket}: revoke
        the account's tickets, end its sessions and revoke its refresh
        tokens (C{device}'s, or with C{None} every one).  On an admitted
        session of a gateway, without C{ticket}: end the account's sessions
        and revoke its tickets; its refresh tokens stay (revoke them with a
        logout at the login server).  Forgets L{refresh_token}.
        """
        self.refresh_token = None
        fields = {}
        if ticket is not None:
            fields["ticket"] = ticket
        if device is not None:
            fields["device"] = device
        return self.request("logout", **fields)

    def _admitted(self, reply: dict) -> dict:
        session, token = reply.get("session"), reply.get("resume")
        if isinstance(session, str):
            self.session = session
        if isinstance(token, str):
            self.resume_token = token
        return reply

    def resume(self, token: str, last_seq: int) -> defer.Deferred:
        """
        Take over the session of resume C{token} (from an earlier
        connection's L{resumption}) instead of presenting a ticket; the
        pushes after C{last_seq} follow the reply, oldest first, and reach
        the L{on} handlers like any other push.  Fires with the reply's
        fields (C{session}, C{resume}, C{seq}, C{replayed}...), or fails with
        L{ServerError} C{resume_refused} (log in again then).
        """
        self.last_seq = last_seq
        return self.request("resume", token=token, last_seq=last_seq)

    def resumption(self) -> tuple[str, int] | None:
        """
        What a new connection needs to resume this session: C{(resume_token,
        last_seq)}, or C{None} before the client was admitted.
        """
        if self.resume_token is None:
            return None
        return self.resume_token, self.last_seq

    def send(self, _type: str, /, **fields) -> None:
        """
        Send a message that expects no reply (errors arrive at
        L{on}("error")); during a move, it is sent once resumed.
        """
        if self._moving:
            self._queued.append((None, _type, fields))
            return
        self.sendMessage({**fields, "t": _type})

    def on(self, kind: str, handler: Callable[[dict], object]) -> None:
        """
        Call C{handler(message)} for every push of type C{kind}.  C{"error"}
        receives error frames not tied to a request, C{"bye"} the goodbye,
        C{"session.move"} a draining gateway's move frame and C{"moved"}
        (C{gateway}, C{host}, C{port}, C{session}, C{replayed}) a move the
        client completed: it now talks to the new gateway.
        """
        self._handlers[kind].append(handler)

    def whenReady(self) -> defer.Deferred:
        """Fires with this client once the handshake is done, or fails."""
        return self._ready.when()

    def whenClosed(self) -> defer.Deferred:
        """
        Fires with a L{ConnectionClosed} (the server's goodbye, or why the
        connection ended) once the connection has ended, however it ended.
        """
        return self._closed.when()

    def close(self) -> defer.Deferred:
        """Say goodbye and close; fires like L{whenClosed}."""
        if self._moving:
            # Closed as soon as the move has connected (or failed).
            self._close_after_move = True
            return self.whenClosed()
        if not self.closing and self.transport is not None:
            self.closing = True
            try:
                self.sendMessage({"t": "bye"})
            finally:
                self.transport.loseConnection()
        return self.whenClosed()

    # -- protocol ------------------------------------------------------------

    def connectionMade(self) -> None:
        d = self.request("hello", versions=self.versions, client=self.name)
        d.addCallbacks(self._welcomed, self._refused)

    def _welcomed(self, welcome: dict) -> None:
        self.welcome = welcome
        limit = welcome.get("max_frame_size")
        if isinstance(limit, int) and limit > 0:
            self.MAX_LENGTH = limit
        self._ready.fire(self)

    def _refused(self, failure: Failure) -> None:
        self._ready.fire(failure)

    def messageReceived(self, message: dict) -> None:
        kind = message["t"]
        if kind == "reply":
            d = self._pending.pop(message.get("id"), None)
            if d is None:
                self.log.warn("reply to unknown request {id!r}", id=message.get("id"))
                return
            fields = dict(message)
            del fields["t"], fields["id"]
            d.callback(fields)
            return
        if kind == "error":
            error = ServerError(
                str(message.get("code")), str(message.get("message")), bool(message.get("fatal"))
            )
            d = self._pending.pop(message.get("id"), None)
            if d is not None:
                d.errback(error)
            else:
                self._dispatch("error", message)
            return
        if kind == "bye":
            self.goodbye = message
            if message.get("code") == "moved" and self.move_target is None:
                self.move_target = _move_target(message)
            self._dispatch("bye", message)
            return
        if kind == "session.move" and "seq" not in message:
            self.move_target = _move_target(message)
            self._dispatch(kind, message)
            return
        if kind == "heartbeat" and "seq" not in message:
            # The server checks that we are alive: answer, then tell any listener.
            if self.answer_heartbeats and not self.closing and self.transport is not None:
                self.sendMessage({"t": "pong"})
            self._dispatch(kind, message)
            return
        seq = message.get("seq")
        if isinstance(seq, int) and not isinstance(seq, bool):
            self.last_seq = seq
        self._dispatch(kind, message)

    def _dispatch(self, kind: str, message: dict) -> None:
        for handler in list(self._handlers.get(kind, ())):
            try:
                handler(message)
            except Exception:
                self.log.failure("handler for {kind!r} failed", kind=kind)

    def wireError(self, error: WireError, request_id) -> None:
        """The server sent something unreadable: stop trusting the stream."""
        self.log.error("closing: server sent {error}", error=str(error))
        self.closing = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closing = True
        if self.goodbye is not None:
            closed = ConnectionClosed(
                str(self.goodbye.get("code")), str(self.goodbye.get("message"))
            )
        else:
            closed = ConnectionClosed(None, reason.getErrorMessage())
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(closed)
        self._ready.fire(Failure(closed))
        if self._moving:
            # The new connection of a move failed: the move's errback reports it.
            return
        target = self.move_target
        if (
            closed.code == "moved"
            and target is not None
            and self.follow_moves
            and self.connector is not None
            and self.resume_token is not None
            and not self._close_after_move
        ):
            self._move(target)
            return
        self._closed.fire(closed)

    # -- following a draining gateway ------------------------------------------

    def _move(self, target: dict) -> None:
        """Connect this client to C{target}, resume the session there, then carry on."""
        self.move_target = None
        self._moving = True
        # A fresh connection for the same protocol instance.
        self.transport = None
        self.connected = 0
        self.closing = False
        self.goodbye = None
        self.reset_framing()
        self._ready = _Outcome()
        self.log.info(
            "following the move to {gateway} ({host}:{port})",
            gateway=target.get("gateway"),
            host=target["host"],
            port=target["port"],
        )
        d = defer.maybeDeferred(self.connector, target["host"], target["port"])
        d.addCallback(lambda _: self._ready.when())
        d.addCallback(lambda _: self.resume(self.resume_token, self.last_seq))
        if self.clock is not None:
            d.addTimeout(self.move_timeout, self.clock)
        d.addCallbacks(self._moved, self._moveFailed, (target,), None, (target,))

    def _moved(self, reply: dict, target: dict) -> None:
        self._moving = False
        queued, self._queued = self._queued, []
        for d, kind, fields in queued:
            if d is None:
                self.send(kind, **fields)
            else:
                self.request(kind, **fields).chainDeferred(d)
        self._dispatch(
            "moved",
            {
                "gateway": target.get("gateway"),
                "host": target["host"],
                "port": target["port"],
                "session": reply.get("session"),
                "replayed": reply.get("replayed"),
            },
        )
        if self._close_after_move:
            self.close()

    def _moveFailed(self, failure: Failure, target: dict) -> None:
        self._moving = False
        closed = ConnectionClosed(
            "moved",
            f"could not resume on {target['host']}:{target['port']}: "
            f"{failure.getErrorMessage() or failure.type.__name__}",
        )
        self.log.warn("{why}", why=closed.message)
        queued, self._queued = self._queued, []
        for d, _, _ in queued:
            if d is not None:
                d.errback(closed)
        self._closed.fire(closed)
        if self.transport is not None and self.connected:
            self.closing = True
            self.transport.abortConnection()


def _move_target(message: dict) -> dict | None:
    """The gateway a C{session.move} (or goodbye C{moved}) names, if well-formed."""
    host, port = message.get("host"), message.get("port")
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int):
        return None
    target = {"host": host, "port": port, "gateway": message.get("gateway")}
    if isinstance(message.get("websocket"), int):
        target["websocket"] = message["websocket"]
    return target


class _GivenProtocol(Factory):
    """Builds the one protocol it was given: the factory of L{connect_protocol}."""

    def __init__(self, protocol):
        self.protocol = protocol

    def buildProtocol(self, addr):
        return self.protocol


def connect_protocol(endpoint, protocol) -> defer.Deferred:
    """
    Connect C{protocol} with C{endpoint}: Twisted's
    C{endpoints.connectProtocol}, without its cost per connection.  That
    defines a factory class on every call, and C{zope.interface} works out
    the declarations of each new class (tens of microseconds, a few
    percent of what a client spends on a connection and its TLS handshake).

    @return: A Deferred firing with C{protocol} once it is connected.
    """
    return endpoint.connect(_GivenProtocol(protocol))


def connect(
    reactor,
    host: str,
    port: int,
    ca: str | None = None,
    hostname: str | None = None,
    timeout: float = 10.0,
    client: Client | None = None,
    resume: tuple[str, int] | None = None,
    tls: ResumingTLS | StdlibTLS | None = None,
) -> defer.Deferred:
    """
    Connect to an mmo server over TLS and handshake; with C{resume}, also
    take over a session (L{Client.resume}).

    @param host: Host name or address to connect to.
    @param ca: PEM file of the CA to trust (default: the platform's).
    @param hostname: The name the server's certificate must carry
        (default: C{host}).
    @param timeout: Seconds for the TCP connection, the TLS handshake and
        the protocol handshake together.
    @param client: The protocol instance to use (a L{Client} subclass).
        Register its L{Client.on} handlers before connecting when resuming:
        the missed pushes arrive right after the C{resume} reply.
    @param resume: C{(resume_token, last_seq)} of a session to resume, as
        given by L{Client.resumption} on the connection that dropped.  The
        timeout then covers the resume as well; a refused resume closes the
        connection and fails the result with L{ServerError}
        C{resume_refused}.
    @param tls: The L{ResumingTLS} (or L{StdlibTLS}) of this server, kept
        by the caller from one connection to the next: the connection is
        offered its session, and its own session is kept in it once the
        server's C{hello} reply has come (C{ca} and C{hostname} are then its
        own business).  By default, a new L{ResumingTLS}: a full handshake.
    @return: A Deferred firing with the ready (and, with C{resume},
        resumed) L{Client}.
    """
    if client is None:
        client = Client()
    if tls is None:
        tls = ResumingTLS(client_tls_options(hostname or host, ca))
    endpoint = tls.wrap(endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout))

    def abort(result, timeout):
        if client.transport is not None:
            client.transport.abortConnection()
        return result

    def connector(to_host: str, to_port: int) -> defer.Deferred:
        # A move keeps the name the caller asked to verify, if any.
        name = hostname or to_host
        if isinstance(tls, StdlibTLS):
            to_tls = tls.elsewhere(name)
        else:
            to_tls = ResumingTLS(client_tls_options(name, ca))
        to = to_tls.wrap(endpoints.HostnameEndpoint(reactor, to_host, to_port, timeout=timeout))
        return connect_protocol(to, client)

    client.connector = connector
    client.clock = reactor
    client.move_timeout = timeout
    d = connect_protocol(endpoint, client)
    d.addCallback(lambda _: client.whenReady())

    def ready(_):
        # The server's tickets came before its hello reply: resumable now.
        tls.keep(client.transport)
        return client

    d.addCallback(ready)
    if resume is not None:
        token, last_seq = resume

        def refused(failure):
            # Like any failure of connect: the caller gets no usable connection.
            if client.transport is not None and not client.closing:
                client.close()
            return failure

        d.addCallback(lambda _: client.resume(token, last_seq))
        d.addCallbacks(lambda _: client, refused)
    d.addTimeout(timeout, reactor, onTimeoutCancel=abort)
    return d
