"""
How the SDK's client reads its frames: most reads hold only whole frames
(a server writes a tick's pushes, or a burst's, together, in one TLS
record), so they are handed on as they are, without the buffering of
Twisted's C{IntNStringReceiver}, which costs as much again as reading a
small push.  Only a read that ends inside a frame goes through Twisted's
buffer, which then holds the start of the frame until the rest comes.
"""

from __future__ import annotations

from mmo.compat import reset_int_n_string_receiver
from mmo.wire.codec import HEADER
from mmo.wire.protocol import FramedProtocol


class WholeFramesProtocol(FramedProtocol):
    """A L{FramedProtocol} that hands the whole frames of a read straight on."""

    #: Whether Twisted's framing buffer holds the start of a frame.
    _partial = False

    def dataReceived(self, data: bytes) -> None:
        if self.closing:
            return
        if not self._partial:
            offset = self._whole_frames(data)
            if offset == len(data):
                return
            data = data[offset:]
        FramedProtocol.dataReceived(self, data)
        # Kept here: Twisted's own answer (recvd) copies its buffer on every read.
        self._partial = bool(self.recvd)

    def _whole_frames(self, data: bytes) -> int:
        """
        Hand the whole frames at the start of C{data} to C{stringReceived},
        until one is cut, over the limit, or reading stops (paused, or
        closing); where what is left starts.
        """
        offset, end, header = 0, len(data), HEADER.unpack_from
        while offset + 4 <= end and not (self.paused or self.closing):
            (length,) = header(data, offset)
            stop = offset + 4 + length
            if stop > end or length > self.MAX_LENGTH:
                break
            self.stringReceived(data[offset + 4 : stop])
            offset = stop
        return offset

    def reset_framing(self) -> None:
        """Forget what was read, for a new connection of the same protocol."""
        reset_int_n_string_receiver(self)
        self._partial = False
