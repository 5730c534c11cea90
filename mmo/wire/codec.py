"""
Frame bodies: msgpack maps with a string "t" (the message type).

A frame on a stream is a 4-byte big-endian unsigned length followed by that
many bytes of body (L{frame}); over WebSocket one binary message is one body.
"""

from __future__ import annotations

import struct
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


def encode(message: dict) -> bytes:
    """The msgpack body of C{message}."""
    return msgpack.packb(message, use_bin_type=True)


def frame(message: dict) -> bytes:
    """C{message} as a complete length-prefixed frame."""
    body = encode(message)
    return HEADER.pack(len(body)) + body


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
