"""
The client wire protocol: length-prefixed frames holding msgpack maps.

C{docs/protocol.md} is the contract; this package implements it:
L{mmo.wire.codes} (error codes), L{mmo.wire.codec} (bodies and frames) and
L{mmo.wire.protocol} (the framing protocol both ends build on).
"""

from mmo.wire.codec import PROTOCOL_VERSION, SUPPORTED_VERSIONS, decode, encode, frame
from mmo.wire.codes import WireError

__all__ = ["PROTOCOL_VERSION", "SUPPORTED_VERSIONS", "WireError", "decode", "encode", "frame"]
