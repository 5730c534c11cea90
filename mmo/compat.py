"""
The one place where mmo reaches into a library's private names, because the
library gives no public way to do what is needed.  Each piece says which
library, which private name, and why; everything else in mmo uses public
API only.  Check these after upgrading the library.
"""

from __future__ import annotations


class MessageTooBigHook:
    """
    Mixin for an autobahn C{WebSocketServerProtocol}: L{message_too_big} is
    called when a client announces a frame or message over
    C{maxFramePayloadSize} / C{maxMessagePayloadSize}, before autobahn
    closes the connection with code 1009.

    Library: autobahn (checked with 26.11).  Private name:
    C{WebSocketProtocol._max_message_size_exceeded}, the hook autobahn calls
    as soon as a frame header announces too much (before the payload is
    buffered) and which then fails the connection.  autobahn has no public
    callback for it: C{onClose} comes only after the close, too late to
    send an error message first.
    """

    def message_too_big(self, size: int, limit: int, reason: str) -> None:
        """Override: C{size} bytes were announced, over C{limit}; C{reason} says so."""

    def _max_message_size_exceeded(self, msg_size, max_msg_size, reason) -> None:
        self.message_too_big(msg_size, max_msg_size, reason)
        super()._max_message_size_exceeded(msg_size, max_msg_size, reason)


def reset_int_n_string_receiver(protocol) -> None:
    """
    Forget the bytes an C{IntNStringReceiver} (C{Int32StringReceiver}...)
    holds of a frame not yet complete, so that the protocol can read a new
    connection from its first byte.

    Library: Twisted (checked with 26.10).  Private names:
    C{IntNStringReceiver._unprocessed} and C{_compatibilityOffset}, its
    buffer.  Twisted has no public way to empty it, a protocol serving one
    connection only; the client SDK follows its session to another gateway
    with the same protocol object, which the application holds.
    """
    protocol._unprocessed = b""
    protocol._compatibilityOffset = 0
