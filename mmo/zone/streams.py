"""
The direct zone -> gateway stream (C{docs/handoff.md}, "A direct zone ->
gateway stream"): what a zone process tells a gateway about the gateway's
players (each tick's pushes, the L{Push}es of
L{mmo.game.service.GameService.deliver}, the handoff's L{SwitchRoute} and
L{Moved}) goes in one ordered stream per (zone process, gateway): the
L{Stream} command, without an answer, over the link the gateway opened to
the zone's process.  A tick's pushes are L{PushStems}, each push encoded
once by the zone as its client's frame (in L{StreamStems}, the same
stream), for a gateway that takes them; a L{PushBatch} for an older one.

Both ends are here.  The zone's: L{GatewayStreams} sends each message over
the gateway's link if the gateway takes L{Stream}, on the bus to an older
gateway, and drops it while no link from the gateway is up (a client's
view is then repaired when it comes up, not replayed: L{GatewayStreams}
tells the zones, which start their views over).  The gateway's:
L{StreamedLinkFactory} builds the links to zone processes, whose
responder hands each message to the gateway's bus L{Dispatcher}, so that
what a zone says reaches the same handlers by either way.  A zone that
is not served by a process of its own (the standalone server, tests) has
L{BusGateways}: the bus, for all of it.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from mmo import rpc
from mmo.game.messages import PushStems, encode, gateway_channel, publish
from mmo.game.routes import pack, unpack
from mmo.rpc.commands import Stream, StreamStems
from mmo.unavailable import log_failure


class BusGateways:
    """What a zone tells gateways, on their bus channels (L{gateway_channel})."""

    log = Logger()

    def __init__(self, bus):
        self.bus = bus

    def takes_stems(self, gateway: str) -> bool:
        """
        Whether C{gateway} is sent a tick's pushes as L{PushStems}: here,
        yes: the bus of a zone without a process of its own is the
        standalone server's, whose gateway is of the same release.
        """
        return True

    def send(self, gateway: str, value, sender: str) -> None:
        """Send C{value} (a message) from C{sender} to C{gateway}, without waiting."""
        publish(self.bus, gateway_channel(gateway), value, sender).addErrback(
            log_failure,
            self.log,
            "{sender}: sending {type} to {gateway} failed",
            sender=sender,
            type=type(value).__name__,
            gateway=gateway,
        )


class GatewayStreams(BusGateways):
    """
    A zone process's streams to its gateways, one per gateway: the link
    from the gateway that is up, once it said (answering a L{Ping}) that it
    takes L{Stream}.  An older gateway's messages go on the bus, as before
    the stream; while a gateway has no link up to this process, what is
    sent to it is dropped, as a publish nobody hears (C{docs/handoff.md},
    rule 4).

    @ivar on_linked: Called with a gateway's name when its stream is up
        after it may have missed something (it was sent something while
        down, or its stream closed with what was on its way): its
        players' views start over.
    """

    def __init__(self, bus):
        super().__init__(bus)
        self.on_linked: list[Callable[[str], None]] = []
        #: Gateway -> the link of its stream.
        self._links: dict[str, rpc.RPCProtocol] = {}
        #: The gateways whose link said they do not take Stream (older ones).
        self._older: set[str] = set()
        #: The gateways that may have missed something: sent to while down,
        #: or whose stream closed (what was on its way may be lost).
        self._missed: set[str] = set()

    def linked(self, link: rpc.RPCProtocol) -> None:
        """
        A gateway's link is up and said what it takes
        (L{rpc.RPCProtocol.ask_takes}): its stream, from now on.
        """
        gateway = link.peer
        if link.takes(Stream):
            self.log.info("stream to {gateway} up", gateway=gateway)
            if gateway in self._links:
                # A new link replaces one still up: what is in flight on
                # the old one may arrive after what comes on this one.
                self._missed.add(gateway)
            self._links[gateway] = link
            self._older.discard(gateway)
        else:
            self.log.info(
                "{gateway} takes no Stream (an older release): its messages go on the bus",
                gateway=gateway,
            )
            self._links.pop(gateway, None)
            self._older.add(gateway)
        if gateway in self._missed:
            self._missed.discard(gateway)
            for linked in self.on_linked:
                linked(gateway)

    def unlinked(self, link: rpc.RPCProtocol) -> None:
        """A gateway's link closed: its stream is down, unless another link took over."""
        if self._links.get(link.peer) is link:
            del self._links[link.peer]
            self._missed.add(link.peer)

    def streaming(self, gateway: str) -> bool:
        """Whether C{gateway}'s stream is up."""
        return gateway in self._links

    def takes_stems(self, gateway: str) -> bool:
        """
        Whether C{gateway} is sent a tick's pushes as L{PushStems}: only on
        a stream whose link takes L{StreamStems}.  An older gateway gets a
        L{mmo.game.messages.PushBatch}, in a L{Stream} or on the bus; to a
        stream that is down, nothing is encoded (it is dropped anyway).
        """
        link = self._links.get(gateway)
        return link is not None and link.takes(StreamStems)

    def send(self, gateway: str, value, sender: str) -> None:
        """
        Send C{value} (a message) from C{sender} to C{gateway}: on its
        stream, on the bus if it is an older gateway, or nowhere while
        its stream is down.
        """
        link = self._links.get(gateway)
        if link is not None:
            # Stems only where takes_stems said so: in the same turn.
            command = StreamStems if type(value) is PushStems else Stream
            link.callRemote(command, message=pack(encode(value, sender)))
        elif gateway in self._older:
            super().send(gateway, value, sender)
        else:
            self._missed.add(gateway)


class StreamedLink(rpc.RPCProtocol):
    """
    A gateway's link to a zone process: it takes the zone's L{Stream}, and
    L{StreamStems} (a L{PushStems} in a L{Stream}), which go the same way:
    heard straight from their boxes once the zone was found allowed to send
    them (L{rpc.RPCProtocol}'s C{heard_directly}; every tick of every zone
    comes here).
    """

    heard_directly = {Stream: "stream", StreamStems: "stream_stems"}

    @Stream.responder
    def stream(self, message: bytes) -> dict:
        # Nothing is answered, and a failure here would drop the link:
        # whatever comes, this never raises.
        self.factory.heard(self.peer, message)
        return {}

    @StreamStems.responder
    def stream_stems(self, message: bytes) -> dict:
        self.factory.heard(self.peer, message)
        return {}


class StreamedLinkFactory(rpc.RPCClientFactory):
    """
    The factory of a gateway's links to a zone process (L{StreamedLink}):
    what comes on the zone's stream goes to C{hear}, the gateway's bus
    L{mmo.game.messages.Dispatcher}, once given (L{hear}).
    """

    protocol = StreamedLink
    log = Logger()

    def __init__(self, config, process, peer, reactor=None, hear=None):
        super().__init__(config, process, peer, reactor)
        #: A one-item list shared with the factories of later links (relink).
        self._hear = hear if hear is not None else [None]

    def fresh(self) -> StreamedLinkFactory:
        return type(self)(self.config, self.process, self.peer, self.reactor, self._hear)

    def hear(self, dispatcher) -> None:
        """Hand what the zone streams to C{dispatcher(data)} from now on."""
        self._hear[0] = dispatcher

    def heard(self, peer: str, message: bytes) -> None:
        """One message of the zone's stream: decoded and dispatched; what fails is logged."""
        dispatcher = self._hear[0]
        if dispatcher is None:
            return
        try:
            data = unpack(message)
        except Exception:
            self.log.warn("a malformed message from {peer} dropped", peer=peer)
            return
        try:
            result = dispatcher(data)
        except Exception:
            self.log.failure("handling a message from {peer} failed", peer=peer)
            return
        if hasattr(result, "addErrback"):
            result.addErrback(log_failure, self.log, "handling a message from {peer}", peer=peer)
