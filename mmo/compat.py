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


def write_through(transport) -> None:
    """
    Have C{transport}, a Twisted socket connection (TCP or Unix), send
    what is written at once when nothing written before is still waiting,
    and buffer (and wait for the socket to be writable) only what the
    kernel does not take.  Twisted's own C{write} always buffers and asks
    the reactor to watch the socket for writability, which costs two
    C{epoll_ctl} and a reactor turn per write of a connection that is not
    behind: the cost of each push of a game server, which writes about
    once per connection per tick.  Order and the producer's pause (the
    transport's buffer size) are unchanged: only what the kernel took
    bypasses the buffer, and only when the buffer is empty.  The socket
    gets C{TCP_NODELAY}.  Any other transport is left alone.

    Library: Twisted (checked with 26.10).  Private names of
    C{twisted.internet.abstract.FileDescriptor}: C{dataBuffer}, C{offset}
    and C{_tempDataLen} (what is buffered), C{_writeDisconnected}; and
    C{writeSomeData} (C{tcp.Connection}'s one send, public but not in an
    interface).  Twisted has no public way to write without buffering.
    """
    from twisted.internet import tcp

    if not isinstance(transport, tcp.Connection):
        return
    # Sending at once needs Nagle's algorithm off: a turn may still send
    # twice (TLS 1.3 sends its session tickets as the handshake ends, then
    # the first reply), and Nagle holds the second send until the peer
    # acknowledges the first, which a peer delays by 40 ms: every
    # connection's first answer (a login's hello) came that late.
    transport.setTcpNoDelay(True)
    buffered = type(transport).write

    def write(data: bytes) -> None:
        if (
            data
            and transport.connected
            and not transport._writeDisconnected
            and not transport._tempDataLen
            and transport.offset >= len(transport.dataBuffer)
            and type(data) is bytes
        ):
            sent = transport.writeSomeData(data)
            # A lost connection (an exception returned) is found by the
            # buffered path, as Twisted finds it.
            if type(sent) is int and sent > 0:
                if sent >= len(data):
                    return
                data = data[sent:]
        buffered(transport, data)

    transport.write = write
