"""
L{Relay}: the queue's client messages between ladder processes.

A gateway sends C{ladder.*} to a ladder process of the config whichever
serves the queue (L{mmo.gateway.tap.gateway_routes}).  A process standing
by answers the board itself (it is the store's) and relays the queue's
messages (C{ladder.queue.*}) on the bus (L{mmo.game.messages.LadderCall}
on L{mmo.game.messages.LADDER_CALLS_CHANNEL}) to the process serving the
queue, which handles them as its own and answers
(L{mmo.game.messages.LadderCallAnswer}) on the relaying process's reply
channel.  No answer within L{RELAY_TIMEOUT} (nobody serves the queue: a
takeover under way) is C{unavailable}, which the client retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from mmo.game import messages
from mmo.game.messages import (
    LADDER_CALLS_CHANNEL,
    LadderCall,
    LadderCallAnswer,
    ladder_reply_channel,
)
from mmo.game.service import Caller
from mmo.unavailable import log_failure
from mmo.wire.codes import INTERNAL, UNAVAILABLE, WireError

#: Seconds a relayed message waits for the serving process's answer.
RELAY_TIMEOUT = 5.0

#: What serves a relayed message: C{(caller, kind, message)} -> the reply.
Handler = Callable[[Caller, str, dict], Awaitable[dict | None]]


class Relay:
    """
    One ladder process's end of the relay: it sends the calls it does not
    serve, and serves those others send while C{serving()}.

    @ivar name: This process on the relay (its reply channel's name).
    """

    log = Logger()

    def __init__(self, bus, reactor, name: str, timeout: float = RELAY_TIMEOUT):
        self.bus = bus
        self.name = name
        self.timeout = timeout
        self.reply_channel = ladder_reply_channel(name)
        self._requests = messages.Requests(reactor)
        self._subscriptions: list = []

    async def start(self, serving: Callable[[], bool], handle: Handler) -> None:
        """Hear calls (answered with C{handle} while C{serving()}) and answers."""
        self._serving = serving
        self._handle = handle
        calls = messages.Dispatcher("ladder calls")
        calls.on(LadderCall, self._heard)
        answers = messages.Dispatcher("ladder call answers")
        answers.on(LadderCallAnswer, self._answered)
        self._subscriptions = [
            await self.bus.subscribe(LADDER_CALLS_CHANNEL, calls),
            await self.bus.subscribe(self.reply_channel, answers),
        ]

    async def stop(self) -> None:
        subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            await subscription.cancel()
        self._requests.fail_all(WireError(UNAVAILABLE, "the ladder process is stopping; retry"))

    # -- sending ------------------------------------------------------------------------

    async def call(self, caller: Caller, kind: str, message: dict) -> dict | None:
        """
        What the process serving the queue answers to C{message}.

        @raise WireError: Its error, or C{unavailable} if none answered.
        """
        request, waiter = self._requests.new(self.timeout)
        call = LadderCall(request, self.reply_channel, caller.to_dict(), kind, message)
        try:
            await messages.publish(self.bus, LADDER_CALLS_CHANNEL, call, self.name)
            answer = await waiter
        except defer.TimeoutError:
            raise WireError(UNAVAILABLE, "the ranked queue is being taken over; retry") from None
        finally:
            if not waiter.called:  # the publish failed
                waiter.cancel()
                waiter.addErrback(lambda _: None)
        if answer.code is not None:
            raise WireError(str(answer.code), str(answer.error or ""))
        return answer.reply

    def _answered(self, sender: str, answer: LadderCallAnswer) -> None:
        self._requests.answer(answer.request, answer)

    # -- serving --------------------------------------------------------------------------

    def _heard(self, sender: str, call: LadderCall) -> defer.Deferred | None:
        if not self._serving():
            return None  # the one that serves answers
        if not isinstance(call.reply, str) or not call.reply.startswith("ladder-reply:"):
            return None
        return defer.ensureDeferred(self._serve(sender, call))

    async def _serve(self, sender: str, call: LadderCall) -> None:
        try:
            caller = Caller.from_dict(call.caller)
            if not isinstance(call.kind, str) or not isinstance(call.message, dict):
                raise TypeError("a call's kind is a string, its message a map")
            answer = LadderCallAnswer(
                call.request, reply=await self._handle(caller, call.kind, call.message)
            )
        except WireError as e:
            answer = LadderCallAnswer(call.request, code=e.code, error=e.message)
        except TypeError as e:
            answer = LadderCallAnswer(call.request, code=INTERNAL, error=f"a malformed call: {e}")
        except Exception:
            log_failure(
                Failure(), self.log, "ladder: a call relayed by {sender} failed", sender=sender
            )
            answer = LadderCallAnswer(call.request, code=INTERNAL, error="the ladder failed")
        await messages.publish(self.bus, call.reply, answer, self.name)
