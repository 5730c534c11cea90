"""
The bots' client: L{mmo.client.Client}, reading C{world.update} pushes
lazily.  A bot needs every push's C{enter} and C{leave} (its view, checked
exactly) but of C{update} only its own entity's position, and only when
the view check asks for it; the C{update} list, most of a push, is left
undecoded (L{mmo.bot.lazy} cuts it out in one C call) and handed on as
its bytes.

The requests a bot fires and forgets (its moves) are answered without a
Deferred (L{BotClient.fire}): only their outcome counts.
"""

from __future__ import annotations

import msgpack
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from mmo.bot.lazy import fast_split_update as split_update
from mmo.bot.stats import error_code
from mmo.client import Client
from mmo.wire.codec import decode
from mmo.wire.codes import BAD_FRAME, WireError

WORLD_UPDATE = "world.update"


def _no_extensions(code, data):
    raise ValueError(f"msgpack extension type {code} is not allowed")


class BotClient(Client):
    """
    A L{Client} whose C{world.update} pushes go to C{on_update(push,
    update)}: the push without its C{update} list, and that list's msgpack
    bytes (C{None} if it has none).  The outcome of each request sent by
    L{fire} goes to C{on_answer(token, code)}.  Every other frame is read
    and dispatched as L{Client} does.
    """

    def __init__(self, on_update, on_answer=None, **kwargs):
        super().__init__(**kwargs)
        self.on_update = on_update
        self.on_answer = on_answer
        # Request id -> the token of a fired request not yet answered.
        self._fired: dict[int, object] = {}

    def fire(self, token, _type: str, /, **fields) -> int | None:
        """
        Send request C{_type} with C{fields}, whose outcome only counts:
        C{on_answer(token, code)} is called once, with C{None} for its
        reply, else the server's error code, C{"closed"} (the connection
        ended first), C{"timeout"} (L{expire} first) or the code of what
        failed to send it.  A reply costs no Deferred and no copy of its
        fields, which L{request} makes for the caller.

        @return: The request's id (for L{expire}), or C{None} when it cannot
            go now (a move under way, the connection closed): nothing was
            sent, L{request} says what happens then.
        """
        if self._moving or self.closing or self.transport is None:
            return None
        self._next_id += 1
        request_id = self._next_id
        self._fired[request_id] = token
        try:
            self.sendMessage({**fields, "t": _type, "id": request_id})
        except Exception as e:
            del self._fired[request_id]
            self.on_answer(token, error_code(e))
        return request_id

    def expire(self, request_id: int) -> None:
        """The fired request C{request_id} counts as C{timeout}, unless it was answered."""
        token = self._fired.pop(request_id, None)
        if token is not None:
            self.on_answer(token, "timeout")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        fired, self._fired = self._fired, {}
        for token in fired.values():
            self.on_answer(token, "closed")
        super().connectionLost(reason)

    def stringReceived(self, body: bytes) -> None:
        if self.closing:
            return
        try:
            message, update = self._read(body)
        except WireError as e:
            self.wireError(e, None)
            return
        kind = message.get("t")
        if kind == WORLD_UPDATE:
            seq = message.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            self.on_update(message, update)
            return
        if self._fired and (kind == "reply" or kind == "error"):
            token = self._fired.pop(message.get("id"), None)
            if token is not None:
                self.on_answer(token, None if kind == "reply" else str(message.get("code")))
                return
        if update is not None:
            message["update"] = msgpack.unpackb(update, raw=False, ext_hook=_no_extensions)
        self.messageReceived(message)

    def _read(self, body: bytes) -> tuple[dict, bytes | None]:
        """The message with its C{update} left out, and C{update}'s bytes."""
        try:
            rest, update, end = split_update(body)
            message = msgpack.unpackb(
                rest, raw=False, strict_map_key=True, ext_hook=_no_extensions, timestamp=0
            )
        except Exception:
            # Not a map, or broken: the codec says what is wrong.
            return decode(body, strict=False), None
        if end != len(body):
            raise WireError(BAD_FRAME, "body has data after its map", fatal=True)
        kind = message.get("t")
        if not isinstance(kind, str) or not kind:
            raise WireError(BAD_FRAME, "body must have a non-empty string 't'", fatal=True)
        return message, update
