"""
The framing protocol shared by the server and the client SDK.

L{FramedProtocol} turns a byte stream into messages (and back) with
Twisted's own length-prefix framing; what to do with a message, and with a
broken stream, is left to subclasses.
"""

from __future__ import annotations

from twisted.protocols.basic import Int32StringReceiver

from mmo.wire import codec
from mmo.wire.codes import FRAME_TOO_LARGE, WireError


class FramedProtocol(Int32StringReceiver):
    """
    Length-prefixed msgpack frames.

    Subclasses implement L{messageReceived} and L{wireError}.  Once
    L{closing} is set no further frame is parsed: after a fatal error the
    rest of the stream is not trusted.

    @ivar MAX_LENGTH: The largest frame body accepted, and sent.
    """

    MAX_LENGTH = 65536
    closing = False
    #: Check every nested map and array of what comes in (L{codec.decode}).
    strict = True

    def dataReceived(self, data: bytes) -> None:
        # After a fatal error (or a goodbye) the rest of the stream is not read.
        if self.closing:
            return
        Int32StringReceiver.dataReceived(self, data)

    def stringReceived(self, body: bytes) -> None:
        if self.closing:
            return
        try:
            message = codec.decode(body, self.strict)
        except WireError as e:
            self.wireError(e, None)
            return
        self.messageReceived(message)

    def lengthLimitExceeded(self, length: int) -> None:
        if self.closing:
            return
        self.wireError(
            WireError(
                FRAME_TOO_LARGE,
                f"frame of {length} bytes is over the limit of {self.MAX_LENGTH}",
                fatal=True,
            ),
            None,
        )

    def sendMessage(self, message: dict) -> None:
        """
        Send one message.

        @raise WireError: The encoded message is over L{MAX_LENGTH}, which
            the peer would refuse.
        """
        body = codec.encode(message)
        if len(body) > self.MAX_LENGTH:
            raise WireError(
                FRAME_TOO_LARGE,
                f"message of {len(body)} bytes is over the limit of {self.MAX_LENGTH}",
            )
        self.sendString(body)

    def messageReceived(self, message: dict) -> None:
        """Handle one decoded message (a dict with a string "t")."""
        raise NotImplementedError()

    def wireError(self, error: WireError, request_id) -> None:
        """Handle a protocol error found while reading the stream."""
        raise NotImplementedError()
