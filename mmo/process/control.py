"""
Control commands: how the manager (and through it C{mmo-admin}) tells a
running process to drain, hand over, kick or broadcast.

Every process listens on its own bus channel,
L{mmo.game.messages.control_channel}C{(NAME)}, for
L{mmo.game.messages.Command}s.  L{ControlService} (a process resource)
dispatches each one to the handler the process registered for that command
and publishes the outcome, a L{mmo.game.messages.CommandReply}, on the
command's reply channel.  L{call} is the other side: it sends one command
and waits for its reply; L{ask_each} sends one to several processes at
once, and L{session_pages} reads a gateway's C{sessions} a page at a time.

The bus is inside the deployment's trust boundary (it is reached with the
deployment's Redis credentials, and carries sessions and tickets already);
operators reach it only through the manager's admin endpoint, which takes
the C{admin} client certificate (see C{docs/manager.md}).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from twisted.internet import defer
from twisted.logger import Logger

from mmo.game import messages
from mmo.game.messages import Command, CommandReply, control_channel, reply_channel

#: Seconds L{call} waits for a reply by default.
CALL_TIMEOUT = 10.0

#: Most sessions one answer of a gateway's C{sessions} command lists.
SESSIONS_PAGE_MAX = 500

#: Most pages L{session_pages} reads of one gateway.
SESSIONS_PAGES_MAX = 1000


class ControlError(Exception):
    """A control command failed: refused, unknown, or not answered in time."""


class NoAnswer(ControlError):
    """Nobody answered a control command in time (no such process running?)."""


class ControlService:
    """
    A process's control channel, as a process resource (started before
    the child services, stopped after them).

    @ivar handlers: Command name -> a callable taking the command's C{args}
        as keyword arguments and returning a msgpack-able result or a
        Deferred of one.  Add to it with L{register}.
    """

    log = Logger()

    def __init__(self, bus, name: str):
        self.bus = bus
        self.name = name
        self.handlers: dict[str, Callable] = {}
        self._subscription = None

    def register(self, command: str, handler: Callable) -> None:
        """Have C{handler} answer C{command}."""
        self.handlers[command] = handler

    async def start(self) -> None:
        dispatcher = messages.Dispatcher(f"{self.name} control")
        dispatcher.on(Command, self.received)
        self._subscription = await self.bus.subscribe(control_channel(self.name), dispatcher)

    async def stop(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.cancel()

    def received(self, sender: str, command: Command) -> defer.Deferred:
        """Run one command and publish its reply."""
        handler = self.handlers.get(command.command) if isinstance(command.command, str) else None
        args = command.args
        if handler is None:
            d = defer.fail(ControlError(f"{self.name} has no command {command.command!r}"))
        elif not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            d = defer.fail(ControlError("args must be a map of names"))
        else:
            self.log.info(
                "{name}: control command {command} {args}",
                name=self.name,
                command=command.command,
                args=args,
            )
            d = defer.maybeDeferred(handler, **args)

        def answered(result):
            return CommandReply(command.id, True, result=result)

        def refused(failure):
            if failure.check(ControlError, TypeError, ValueError):
                why = str(failure.value)
            else:
                self.log.failure(
                    "{name}: control command {command} failed",
                    failure,
                    name=self.name,
                    command=command.command,
                )
                why = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
            return CommandReply(command.id, False, error=why)

        d.addCallbacks(answered, refused)
        if isinstance(command.reply, str):
            d.addCallback(lambda reply: messages.publish(self.bus, command.reply, reply, self.name))
            d.addErrback(
                lambda f: self.log.failure("{name}: control reply lost", f, name=self.name)
            )
        return d


async def call(
    bus,
    process: str,
    command: str,
    args: dict | None = None,
    timeout: float = CALL_TIMEOUT,
    reactor=None,
):
    """
    Send C{command} with C{args} (the handler's keyword arguments) to
    process C{process} and wait for its reply.

    @return: The command's result.
    @raise NoAnswer: The process did not answer within C{timeout} seconds
        (it is not running, or not listening yet).
    @raise ControlError: The process refused it.
    """
    if reactor is None:
        from twisted.internet import reactor
    requests = messages.Requests(reactor)
    ident, answer = requests.new(timeout)
    dispatcher = messages.Dispatcher(f"reply to {command}")
    dispatcher.on(CommandReply, lambda sender, reply: requests.answer(reply.id, reply))
    subscription = await bus.subscribe(reply_channel(ident), dispatcher)
    try:
        await messages.publish(
            bus, control_channel(process), Command(command, args or {}, ident, reply_channel(ident))
        )
        try:
            reply = await answer
        except defer.TimeoutError:
            raise NoAnswer(f"{process} did not answer {command!r} within {timeout:g}s") from None
    finally:
        await subscription.cancel()
    if not reply.ok:
        raise ControlError(f"{process}: {reply.error}")
    return reply.result


async def ask_each(
    bus, names, command: str, args: dict, reactor, timeout: float = CALL_TIMEOUT
) -> tuple[dict, dict]:
    """
    Send C{command} with C{args} to every process of C{names} at once, on
    their control channels.

    @return: C{(answers, errors)}: by process, what it answered, or why it
        did not.
    """
    results = await defer.DeferredList(
        [
            defer.ensureDeferred(call(bus, name, command, args, timeout=timeout, reactor=reactor))
            for name in names
        ],
        consumeErrors=True,
    )
    answers, errors = {}, {}
    for name, (ok, value) in zip(names, results, strict=True):
        if ok:
            answers[name] = value
        else:
            errors[name] = value.getErrorMessage()
    return answers, errors


async def session_pages(
    bus,
    gateway: str,
    deadline: float,
    reactor,
    limit: int = SESSIONS_PAGE_MAX,
    pages: int = SESSIONS_PAGES_MAX,
) -> AsyncIterator[list[dict]]:
    """
    The sessions C{gateway} holds, by its C{sessions} control command: an
    async iterator of pages (lists of rows), each asked after the last
    session id of the one before, until the gateway says there is no
    more, or C{pages} were read.

    @param deadline: Seconds the whole listing may take.
    @raise NoAnswer: The gateway did not answer a page before the deadline.
    @raise ControlError: It refused, or answered something that is no page.
    """
    ends = reactor.seconds() + deadline
    after = ""
    for _ in range(pages):
        left = ends - reactor.seconds()
        if left <= 0:
            raise NoAnswer(f"{gateway} did not list its sessions within {deadline:g}s")
        args = {"after": after, "limit": limit}
        try:
            page = await call(bus, gateway, "sessions", args, timeout=left, reactor=reactor)
        except NoAnswer:
            raise NoAnswer(f"{gateway} did not list its sessions within {deadline:g}s") from None
        rows = page.get("sessions") if isinstance(page, dict) else None
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and isinstance(row.get("session"), str) for row in rows
        ):
            raise ControlError(f"{gateway}: its sessions are no page: {page!r:.200}")
        yield rows
        # A page must move on: a gateway that repeats itself is not followed.
        if not page.get("more") or not rows or rows[-1]["session"] <= after:
            return
        after = rows[-1]["session"]
