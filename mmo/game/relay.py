"""
L{Relay}: client messages between the processes of a kind of which one
holder serves some (the ladder's queue, the economy's trades).

A gateway sends a service's messages to any process of its kind
(L{mmo.gateway.tap.gateway_routes}).  A process standing by answers what
is the store's itself and relays the rest on the bus
(L{mmo.game.messages.ServiceCall} on the kind's calls channel,
L{mmo.game.messages.service_calls_channel}) to the process holding the
kind's lease (L{mmo.game.lease}), which handles them as its own and
answers (L{mmo.game.messages.ServiceCallAnswer}) on the relaying
process's reply channel (L{mmo.game.messages.service_reply_channel}).  No
answer within L{RELAY_TIMEOUT} (nobody serves: a takeover under way) is
C{unavailable}, which the client retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.messages import (
    SERVICE_REPLY_PREFIX,
    ServiceCall,
    ServiceCallAnswer,
    service_calls_channel,
    service_reply_channel,
)
from mmo.game.service import Caller
from mmo.unavailable import client_error, log_failure
from mmo.wire.codes import INTERNAL, UNAVAILABLE, WireError

#: Seconds a relayed message waits for the serving process's answer.
RELAY_TIMEOUT = 5.0

#: What serves a relayed message: C{(caller, kind, message)} -> the reply.
Handler = Callable[[Caller, str, dict], Awaitable[dict | None]]


class Relay:
    """
    One process's end of its kind's relay: it sends the calls it does not
    serve, and serves those others send while C{serving()}.

    @ivar kind: The service kind (its calls channel, its log lines).
    @ivar name: This process on the relay (its reply channel's name).
    @ivar busy: What a client is told while nobody answers (C{unavailable}).
    """

    log = Logger()

    def __init__(
        self,
        bus,
        reactor,
        kind: str,
        name: str,
        busy: str = "being taken over",
        timeout: float = RELAY_TIMEOUT,
    ):
        self.bus = bus
        self.kind = kind
        self.name = name
        self.busy = busy
        self.timeout = timeout
        self.calls_channel = service_calls_channel(kind)
        self.reply_channel = service_reply_channel(name)
        self._requests = messages.Requests(reactor)
        self._subscriptions: list = []

    async def start(self, serving: Callable[[], bool], handle: Handler) -> None:
        """Hear calls (answered with C{handle} while C{serving()}) and answers."""
        self._serving = serving
        self._handle = handle
        calls = messages.Dispatcher(f"{self.kind} calls")
        calls.on(ServiceCall, self._heard)
        answers = messages.Dispatcher(f"{self.kind} call answers")
        answers.on(ServiceCallAnswer, self._answered)
        self._subscriptions = [
            await self.bus.subscribe(self.calls_channel, calls),
            await self.bus.subscribe(self.reply_channel, answers),
        ]

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.cancel()
        self._requests.fail_all(
            WireError(UNAVAILABLE, f"the {self.kind} process is stopping; retry")
        )

    # -- sending ------------------------------------------------------------------------

    async def call(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        What the process holding the lease answers to C{message}.

        @raise WireError: Its error, or C{unavailable} if none answered.
        """
        request, waiter = self._requests.new(self.timeout)
        call = ServiceCall(request, self.reply_channel, caller.to_dict(), kind, message)
        try:
            await messages.publish(self.bus, self.calls_channel, call, self.name)
            answer = await waiter
        except defer.TimeoutError:
            raise WireError(UNAVAILABLE, f"{self.busy}; retry") from None
        finally:
            if not waiter.called:  # the publish failed
                waiter.cancel()
                waiter.addErrback(lambda _: None)
        if answer.code is not None:
            raise WireError(str(answer.code), str(answer.error or ""))
        return answer.reply

    def _answered(self, sender: str, answer: ServiceCallAnswer) -> None:
        self._requests.answer(answer.request, answer)

    # -- serving --------------------------------------------------------------------------

    def _heard(self, sender: str, call: ServiceCall) -> defer.Deferred | None:
        if not self._serving():
            return None  # the one that serves answers
        if not isinstance(call.reply, str) or not call.reply.startswith(SERVICE_REPLY_PREFIX):
            return None
        return defer.ensureDeferred(self._serve(sender, call))

    async def _serve(self, sender: str, call: ServiceCall) -> None:
        try:
            caller = Caller.from_dict(call.caller)
            if not isinstance(call.kind, str) or not isinstance(call.message, dict):
                raise TypeError("a call's kind is a string, its message a map")
            answer = ServiceCallAnswer(
                call.request, reply=await self._handle(caller, call.kind, call.message)
            )
        except WireError as e:
            answer = ServiceCallAnswer(call.request, code=e.code, error=e.message)
        except TypeError as e:
            answer = ServiceCallAnswer(call.request, code=INTERNAL, error=f"a malformed call: {e}")
        except Exception as e:
            said = {"kind": self.kind, "sender": sender}
            what = "{kind}: a call relayed by {sender} failed"
            # The store or the bus not reachable now: unavailable, which the client retries.
            error = client_error(e, self.log, what, **said)
            if error is None:
                log_failure(Failure(), self.log, what, **said)
                error = WireError(INTERNAL, f"the {self.kind} failed")
            answer = ServiceCallAnswer(call.request, code=error.code, error=error.message)
        await messages.publish(self.bus, call.reply, answer, self.name)
