"""
The bots' client: L{mmo.client.Client}, reading C{world.update} pushes
lazily.  A bot needs every push's C{enter} and C{leave} (its view, checked
exactly) but of C{update} only its own entity's position, and only when
the view check asks for it; the C{update} list, most of a push, is left
undecoded (msgpack skips it in C) and handed on as its bytes.
"""

from __future__ import annotations

import msgpack

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
    bytes (C{None} if it has none).  Every other frame is read and
    dispatched as L{Client} does.
    """

    def __init__(self, on_update, **kwargs):
        super().__init__(**kwargs)
        self.on_update = on_update
        self._unpacker: msgpack.Unpacker | None = None

    def stringReceived(self, body: bytes) -> None:
        if self.closing:
            return
        try:
            message, update = self._read(body)
        except WireError as e:
            self.wireError(e, None)
            return
        if message.get("t") == WORLD_UPDATE:
            seq = message.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                self.last_seq = seq
            self.on_update(message, update)
            return
        if update is not None:
            message["update"] = msgpack.unpackb(update, raw=False, ext_hook=_no_extensions)
        self.messageReceived(message)

    def _read(self, body: bytes) -> tuple[dict, bytes | None]:
        """The message with its C{update} left out, and C{update}'s bytes."""
        unpacker = self._unpacker
        if unpacker is None:
            # One per connection: making one costs a good part of reading a push.
            unpacker = self._unpacker = msgpack.Unpacker(
                raw=False, strict_map_key=True, ext_hook=_no_extensions, timestamp=0
            )
        base = unpacker.tell()
        unpacker.feed(body)
        update = None
        try:
            message = {}
            for _ in range(unpacker.read_map_header()):
                key = unpacker.unpack()
                if key == "update":
                    start = unpacker.tell() - base
                    unpacker.skip()
                    update = body[start : unpacker.tell() - base]
                else:
                    message[key] = unpacker.unpack()
        except Exception:
            # Not a map, or broken: the codec says what is wrong.
            self._unpacker = None
            return decode(body, strict=False), None
        if unpacker.tell() - base != len(body):
            self._unpacker = None
            raise WireError(BAD_FRAME, "body has data after its map", fatal=True)
        kind = message.get("t")
        if not isinstance(kind, str) or not kind:
            raise WireError(BAD_FRAME, "body must have a non-empty string 't'", fatal=True)
        return message, update
