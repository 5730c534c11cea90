"""
Frame bodies: msgpack maps with a string "t" (the message type).

A frame on a stream is a 4-byte big-endian unsigned length followed by that
many bytes of body (L{frame}); over WebSocket one binary message is one body.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import msgpack

from mmo.wire.codes import BAD_FRAME, WireError

#: The protocol version this server speaks best.
PROTOCOL_VERSION = 1
#: Every version this implementation speaks.
SUPPORTED_VERSIONS = (1,)

HEADER = struct.Struct("!I")


def _no_extensions(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not allowed")


def _check_pairs(pairs: list) -> dict:
    # strict_map_key lets bin keys through, and the timestamp extension
    # (type -1) never reaches ext_hook: refuse both here, at every depth.
    # The map comes as its pairs (not as a dict, where a repeated key would
    # already have replaced the first) so that a key given twice is seen:
    # a decode costs about a fifth more than with a check of the built dict,
    # the cheapest correct way measured (a C-level scan of the pairs was
    # slower for the small maps clients send).
    for key, item in pairs:
        if not isinstance(key, str):
            raise ValueError("map keys must be strings")
        if isinstance(item, msgpack.Timestamp):
            raise ValueError("msgpack extension type -1 is not allowed")
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("a key appears twice in a map")
    return value


def _check_array(value: list) -> list:
    for item in value:
        if isinstance(item, msgpack.Timestamp):
            raise ValueError("msgpack extension type -1 is not allowed")
    return value


def _as_map(value):
    """
    What msgpack packs a mapping that is not a dict as: the dict it
    equals (the zone's compiled kernel makes its update entries so).
    """
    if isinstance(value, Mapping):
        return dict(value.items())
    raise TypeError(f"can not serialize {type(value).__name__!r} object")


#: msgpack of the reactor's thread.  One packer, kept: C{packb} makes one
#: (and its buffer) per call, which costs as much as packing a small map.
#: It is never re-entered (its C{default} hook, L{_as_map}, packs nothing
#: itself) and it starts afresh after a value it cannot pack.
_pack = msgpack.Packer(use_bin_type=True, default=_as_map).pack


def encode(message: dict) -> bytes:
    """The msgpack body of C{message}."""
    return _pack(message)


def frame(message: dict) -> bytes:
    """C{message} as a complete length-prefixed frame."""
    body = encode(message)
    return HEADER.pack(len(body)) + body


# -- numbered pushes ------------------------------------------------------------
#
# A push goes to many sessions, each numbering it with its own "seq": its
# body is encoded once, as a I{stem} (the frame up to the number), and each
# session's frame is the stem followed by the number (L{numbered}).  The number is
# the map's last entry, a msgpack uint 32 (0xce and four bytes), so every
# frame of a stem has the same length and the stem carries the length
# header; its body is as long as the stem.  Decoded, a numbered frame is exactly the message
# C{{**fields, "t": kind, "seq": seq}}.

#: The placeholder number a stem is cut from: the largest uint 32.
_SEQ_PLACEHOLDER = 0xFFFFFFFF
_pack_uint32 = struct.Struct("!I").pack
_UINT64_SEQ = struct.Struct("!BQ")


def push_stem(kind: str, fields: dict, fragments: dict[int, bytes] | None = None) -> bytes:
    """
    The frame of push C{kind} with C{fields} up to its sequence number,
    encoded once for any number of sessions (L{numbered}).

    @param fragments: The msgpack of the items of long list fields, by
        C{id}, shared by the stems of one batch of pushes (a tick's): an
        entity's update entry is in many observers' pushes, the same object
        and the same bytes in each, so it is packed once and the others
        join those bytes.  Only for items that stay alive and unchanged as
        long as C{fragments} is used.  The stem is the same bytes either way.
    @raise TypeError: A field msgpack cannot encode.
    """
    if "seq" in fields:
        # The number goes last, where a stem is cut.
        fields = {k: v for k, v in fields.items() if k != "seq"}
    if fragments is not None and "t" not in fields:
        for value in fields.values():
            if type(value) is list and len(value) >= _JOINED_FROM:
                return _joined_stem(kind, fields, fragments)
    body = _pack({**fields, "t": kind, "seq": _SEQ_PLACEHOLDER})
    return HEADER.pack(len(body)) + body[:-4]


#: The shortest list whose items a stem joins from fragments: below it,
#: packing the push whole costs less than joining (python
#: bench/zone_tick.py shows the encoding of a tick's pushes).
_JOINED_FROM = 16


def _joined_stem(kind: str, fields: dict, fragments: dict[int, bytes]) -> bytes:
    # push_stem's bytes, joined: the map's entries in its order, "t" and
    # the number last.
    pack = _pack
    parts = [_map_header(len(fields) + 2)]
    append = parts.append
    for key, value in fields.items():
        append(pack(key))
        if type(value) is list and len(value) >= _JOINED_FROM:
            append(_array_header(len(value)))
            append(_joined(value, fragments, pack))
        else:
            append(pack(value))
    append(_T)
    append(pack(kind))
    append(_SEQ_MARKER)
    body = b"".join(parts)
    return HEADER.pack(len(body) + 4) + body


#: The key "t"; the key "seq" and the uint 32 marker of its number.
_T = encode("t")
_SEQ_MARKER = encode("seq") + b"\xce"


def _map_header(size: int) -> bytes:
    return _container_header(size, 0x80, b"\xde", b"\xdf")


def _array_header(size: int) -> bytes:
    return _container_header(size, 0x90, b"\xdc", b"\xdd")


def _container_header(size: int, fixed: int, sixteen: bytes, thirty_two: bytes) -> bytes:
    # msgpack's shortest header of a map or array: its fix form, 16 or 32.
    if size < 16:
        return bytes((fixed | size,))
    if size < 0x10000:
        return sixteen + size.to_bytes(2, "big")
    return thirty_two + size.to_bytes(4, "big")


def _joined(items: list, fragments: dict[int, bytes], pack) -> bytes:
    # The items' msgpack, each packed once per batch (push_stem).
    packed = []
    append = packed.append
    get = fragments.get
    for item in items:
        key = id(item)
        fragment = get(key)
        if fragment is None:
            fragment = fragments[key] = pack(item)
        append(fragment)
    return b"".join(packed)


def check_stem(stem) -> None:
    """
    Check that C{stem}, made by another process, is one L{push_stem}
    makes: bytes, at least a header and the uint 32 marker long, whose
    length header is its own length and whose last byte is the marker of
    the number spliced after it.  (Its body is not parsed: a stem comes
    from a trusted peer, and parsing is what stems save.)

    @raise ValueError: It is not.
    """
    if type(stem) is not bytes:
        raise ValueError(f"a stem is bytes, not {type(stem).__name__}")
    if len(stem) < 6 or HEADER.unpack_from(stem)[0] != len(stem) or stem[-1] != 0xCE:
        raise ValueError(f"not a push stem: its header does not match its {len(stem)} bytes")


def numbered(stem: bytes, seq: int) -> bytes:
    """
    The complete frame of C{stem} numbered C{seq}: the stem and the number,
    joined (one write to the transport, one TLS record; a fan-out copies
    each session's ~100 bytes once, which is cheaper than writing twice).
    """
    if seq <= _SEQ_PLACEHOLDER:
        return stem + _pack_uint32(seq)
    # Past 32 bits (a session of billions of pushes): uint 64, a longer frame.
    return HEADER.pack(len(stem) + 4) + stem[4:-1] + _UINT64_SEQ.pack(0xCF, seq)


def numbered_body(stem: bytes, seq: int) -> bytes:
    """The body of C{stem} numbered C{seq}: L{numbered} without its length header."""
    return numbered(stem, seq)[4:]


def decode(body: bytes, strict: bool = True) -> dict:
    """
    Parse one frame body.

    @param strict: Check every map and array inside the message too (string
        keys only, each once; no timestamps), as a server must for what
        clients send.
        A client reading its own verified server skips that (C{False}):
        per nested value in Python, it costs twice the parsing itself on
        a C{world.update}.  Extension types are refused either way.
    @return: The message, a dict whose "t" is a non-empty string.
    @raise WireError: With code C{bad_frame} (fatal) for anything else.
    """
    try:
        if strict:
            message = msgpack.unpackb(
                body,
                raw=False,
                strict_map_key=True,
                ext_hook=_no_extensions,
                timestamp=0,
                object_pairs_hook=_check_pairs,
                list_hook=_check_array,
            )
        else:
            message = msgpack.unpackb(
                body, raw=False, strict_map_key=True, ext_hook=_no_extensions, timestamp=0
            )
    except Exception as e:
        raise WireError(BAD_FRAME, f"body is not valid msgpack: {e}", fatal=True)
    if not isinstance(message, dict):
        raise WireError(BAD_FRAME, "body must be a map", fatal=True)
    kind = message.get("t")
    if not isinstance(kind, str) or not kind:
        raise WireError(BAD_FRAME, "body must have a non-empty string 't'", fatal=True)
    return message
