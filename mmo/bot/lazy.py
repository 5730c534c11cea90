"""
How the bots' client reads a push without its C{update} list: L{split_update}
cuts a frame body (a msgpack map) into the map without its C{update} entry,
for one C{msgpack.unpackb}, and that entry's value, left as its bytes.

The compiled C{mmo.bot._lazy} (C{make venv} builds it) walks the map in
C, one call per push; this module's L{split_update} does the same with
msgpack's C{Unpacker}, a call per key and value, and is used where the
compiled one is not built or C{MMO_PURE_PYTHON=1} is set.  Both take the
same bodies and give the same results (C{tests/test_bot.py}).
"""

from __future__ import annotations

import os

import msgpack

_unpacker: msgpack.Unpacker | None = None


def split_update(body: bytes) -> tuple[bytes, bytes | None, int]:
    """
    C{(rest, update, end)} of the msgpack map at the start of C{body}:
    C{rest} the map without its C{"update"} entry (msgpack, the same
    entries in the same order; the map's own bytes when it has none),
    C{update} that entry's value, as its msgpack bytes, or C{None}, and
    C{end} the offset where the map ends (C{len(body)} unless data follows).

    @raise ValueError: C{body} does not start with a whole map whose keys
        are strings (valid UTF-8), or has C{"update"} twice.  Nothing is
        said about the values but that they are whole: decoding C{rest}
        checks those.
    """
    global _unpacker
    unpacker = _unpacker
    if unpacker is None:
        # One for all reads: making one costs a good part of reading a push.
        unpacker = _unpacker = msgpack.Unpacker(raw=False)
    base = unpacker.tell()
    unpacker.feed(body)
    try:
        size = unpacker.read_map_header()
        start = unpacker.tell() - base
        cut = None
        for _ in range(size):
            key_start = unpacker.tell() - base
            key = unpacker.unpack()
            if type(key) is not str:
                raise ValueError("a key that is not a string")
            unpacker.skip()
            if key == "update":
                if cut is not None:
                    raise ValueError("update twice")
                cut = (key_start, unpacker.tell() - base)
        end = unpacker.tell() - base
    except Exception as e:
        _unpacker = None
        if isinstance(e, ValueError):
            raise
        # msgpack's OutOfData (a cut map) is no ValueError.
        raise ValueError(str(e) or type(e).__name__) from e
    if end != len(body):
        # What follows the map stays in the unpacker's buffer.
        _unpacker = None
    if cut is None:
        return body[:end], None, end
    key_start, value_end = cut
    # The value starts after the key, whose bytes are 0xa6 "update" (7),
    # or a longer header of the same string.
    value_start = key_start + _key_length(body[key_start])
    update = body[value_start:value_end]
    rest = map_header(size - 1) + body[start:key_start] + body[value_end:end]
    return rest, update, end


def _key_length(first: int) -> int:
    """The bytes of the string "update" whose header starts with byte C{first}."""
    if 0xA0 <= first <= 0xBF:
        return 1 + 6
    return {0xD9: 2, 0xDA: 3, 0xDB: 5}[first] + 6


def map_header(size: int) -> bytes:
    """The msgpack header of a map of C{size} entries."""
    if size < 16:
        return bytes((0x80 | size,))
    if size < 1 << 16:
        return b"\xde" + size.to_bytes(2, "big")
    return b"\xdf" + size.to_bytes(4, "big")


def _compiled():
    """C{mmo.bot._lazy}'s L{split_update}, or C{None} (not built, or not wanted)."""
    if os.environ.get("MMO_PURE_PYTHON") == "1":
        return None
    try:
        from mmo.bot import _lazy
    except ImportError:
        return None
    return _lazy.split_update


#: The pure-Python L{split_update}, kept under this name for the tests.
pure_split_update = split_update
#: What the bots' client calls: the compiled one where it is built.
fast_split_update = _compiled() or split_update
