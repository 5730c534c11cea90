"""
Control commands: how the manager (and through it C{mmo-admin}) tells a
running process to drain, hand over, kick or broadcast.

Every process listens on its own bus channel, L{control_channel}C{(NAME)},
for messages C{{"command": str, "args": dict, "id": str, "reply": str}}.
L{ControlService} (a process resource) dispatches each one to the handler
the process registered for that command and publishes the outcome on the
C{reply} channel: C{{"id": ..., "ok": True, "result": ...}} or C{{"id":
..., "ok": False, "error": "why"}}.  L{call} is the other side: it sends
one command and waits for its reply.

The bus is inside the deployment's trust boundary (it is reached with the
deployment's Redis credentials, and carries sessions and tickets already);
operators reach it only through the manager's admin endpoint, which takes
the C{admin} client certificate (see C{docs/manager.md}).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from twisted.internet import defer
from twisted.logger import Logger

#: Seconds L{call} waits for a reply by default.
CALL_TIMEOUT = 10.0


def control_channel(process: str) -> str:
    """The bus channel process C{process} takes control commands on."""
    return f"control:{process}"


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
        self._subscription = await self.bus.subscribe(control_channel(self.name), self.received)

    async def stop(self) -> None:
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            await subscription.cancel()

    def received(self, message) -> defer.Deferred | None:
        """Run one command; bad messages are logged and dropped."""
        if not isinstance(message, dict):
            self.log.warn("{name}: dropped a control message that is not a map", name=self.name)
            return None
        command, args = message.get("command"), message.get("args") or {}
        reply, ident = message.get("reply"), message.get("id")
        handler = self.handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            d = defer.fail(ControlError(f"{self.name} has no command {command!r}"))
        elif not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
            d = defer.fail(ControlError("args must be a map of names"))
        else:
            self.log.info(
                "{name}: control command {command} {args}",
                name=self.name,
                command=command,
                args=args,
            )
            d = defer.maybeDeferred(handler, **args)

        def answered(result):
            return {"id": ident, "ok": True, "result": result}

        def refused(failure):
            if failure.check(ControlError, TypeError, ValueError):
                why = str(failure.value)
            else:
                self.log.failure(
                    "{name}: control command {command} failed",
                    failure,
                    name=self.name,
                    command=command,
                )
                why = f"{type(failure.value).__name__}: {failure.getErrorMessage()}"
            return {"id": ident, "ok": False, "error": why}

        d.addCallbacks(answered, refused)
        if isinstance(reply, str):
            d.addCallback(lambda answer: self.bus.publish(reply, answer))
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
    ident = uuid.uuid4().hex
    reply_channel = f"control-reply:{ident}"
    answer: defer.Deferred = defer.Deferred()

    def got(message):
        if isinstance(message, dict) and message.get("id") == ident and not answer.called:
            answer.callback(message)

    subscription = await bus.subscribe(reply_channel, got)
    try:
        await bus.publish(
            control_channel(process),
            {"command": command, "args": args or {}, "id": ident, "reply": reply_channel},
        )
        answer.addTimeout(timeout, reactor)
        try:
            message = await answer
        except defer.TimeoutError:
            raise NoAnswer(f"{process} did not answer {command!r} within {timeout:g}s") from None
    finally:
        await subscription.cancel()
    if not message.get("ok"):
        raise ControlError(f"{process}: {message.get('error')}")
    return message.get("result")
