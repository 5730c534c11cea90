"""
The bytes a connection has sent that its client has not read yet, bounded.

A client that stops reading leaves what the server writes in the kernel's
send queue and then in the transport's buffer, which grows without a limit
for as long as the server goes on writing (pushes, replies, WebSocket
pongs).  L{SendBacklog} bounds it with Twisted's public producer API: it
registers itself as a streaming producer on the connection's TLS transport,
which pauses it once the TCP transport holds more than its buffer size
(64 KiB: the kernel's queue is full by then), and resumes it once the
buffer is empty again.  While paused, every byte written is counted; past
C{[listeners] max_unsent} of them the connection is told so, once, and
closes (goodbye C{slow_reader}).  No private attribute of the transport is
read, and counting costs an addition per write.

What else holds output on its way is bounded by itself: Twisted's TLS
gathers at most 64 KB of small writes before passing them on; autobahn's
own send queue serves only chopped or synchronous writes, which mmo does
not make; the WebSocket frame transport holds one incomplete frame at most.

The protocol directly on the TLS transport owns the backlog: the client
protocol over TCP, the WebSocket protocol (whose own frames, pongs among
them, are output too) over WebSocket, whose inner transport says so by
providing L{IWatchedTransport}.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import interfaces
from zope.interface import Interface, implementer


class IWatchedTransport(Interface):
    """
    A transport whose output is already counted by a L{SendBacklog} below
    it (L{mmo.frontend.websocket.FrameTransport}): the protocol on it keeps
    none of its own.
    """


@implementer(interfaces.IPushProducer)
class SendBacklog:
    """
    Counts what a connection writes while its transport is full.

    @ivar limit: The most bytes written while paused before L{overflowed}.
    @ivar unsent: Bytes written since the transport last said it was full
        (0 while it is not).
    @ivar paused: Whether the transport is full (it paused this producer).
    @ivar over: Set once the limit was passed (the callback was called).
    """

    # One per connection: no per-instance dict.
    __slots__ = ("limit", "_overflowed", "paused", "over", "unsent", "_transport")

    def __init__(self, limit: int, overflowed: Callable[[int], None]):
        self.limit = limit
        self._overflowed = overflowed
        self.paused = False
        self.over = False
        self.unsent = 0
        self._transport = None

    def watch(self, transport) -> None:
        """Be told by C{transport} when its buffer is full and when it is empty again."""
        self._transport = transport
        transport.registerProducer(self, True)

    def unwatch(self) -> None:
        """
        Stop watching the transport (before closing it: TLS closes only once
        no producer is registered).  What is written from now on is still
        counted as it was when the watch stopped.
        """
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.unregisterProducer()

    def wrote(self, count: int) -> None:
        """
        C{count} bytes were written: while the transport is full, count
        them, and call the callback (with the count) the first time the
        limit is passed.
        """
        if not self.paused:
            return
        self.unsent += count
        if self.unsent > self.limit and not self.over:
            self.over = True
            self._overflowed(self.unsent)

    # -- IPushProducer: called by the transport ------------------------------

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self.unsent = 0

    def stopProducing(self) -> None:
        self.paused = False
