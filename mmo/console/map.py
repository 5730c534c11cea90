"""
The console's live world map: L{map_resource}, mounted at C{/map} on the
console's HTTPS site.

    /map/           a page of the map alone (the console's "Map" view
                    loads the same script)
    /map/map.js     the drawing, an ES module: on a canvas in
                    C{<div id="world-map">}
    /map/stream     a WebSocket (secure: on the console's listener): the
                    world first, then updates of the browser's view

Everything under C{/map} is refused to whoever the console's
C{auth.authorized(request)} refuses, and the stream to a page of another
origin.  One L{MapHub} per resource: while at least one browser has the
stream open, it asks the zones for their frames (L{MapWatch} on the bus,
renewed, with the rectangle its browsers' views cover: the zones outside
it send nothing) and sends each browser the update of its view as soon as a
zone's frame comes, at most L{SEND_RATE} a second (L{mmo.console.mapview}).
See C{docs/map.md}.
"""

from __future__ import annotations

import json
import math
import uuid
from importlib import resources
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import task
from twisted.logger import Logger
from twisted.web import pages, resource, static, util

from mmo.console.mapview import Frames, View, encode_update, world_message
from mmo.frontend.backlog import SendBacklog
from mmo.game.messages import (
    MAP_FEED_CHANNEL,
    MAP_WATCH_CHANNEL,
    Dispatcher,
    MapFrame,
    MapWatch,
    publish,
)
from mmo.unavailable import log_failure

#: Seconds between two L{MapWatch}es while someone watches.
WATCH_EVERY = 1.0

#: The watch's time to live, seconds: three renewals, so that one lost
#: message does not stop the frames.
WATCH_TTL = 3.0

#: The most updates per second a browser is sent: the frames of several
#: zones that come closer together than this make one update.
SEND_RATE = 30.0

#: The longest message a browser may send (its view), bytes.
MAX_MESSAGE = 1024

#: Bytes a browser may leave unread before the stream closes.
MAX_UNSENT = 4 * 1024 * 1024


class MapHub:
    """
    The zones' frames, and the browsers that watch them (see the module
    docstring).

    @ivar frames: The zones' latest frames (L{Frames}).
    @ivar watchers: The open streams (L{MapStream}).
    """

    log = Logger()

    def __init__(self, world, bus, clock, sender: str | None = None):
        """
        @param sender: This console's name on the bus (its watches by this
            name replace each other in the zones): by default a new one.
        """
        self.world = world
        self.bus = bus
        self.clock = clock
        self.sender = sender if sender is not None else f"console-{uuid.uuid4().hex[:12]}"
        #: The view of the last watch sent.
        self._asked: View | None = None
        self.frames = Frames(clock)
        self.watchers: set = set()
        self._sent_at = -math.inf
        self._sending = None
        self._subscription = None
        self._subscribing = None
        self._dispatcher = Dispatcher("map")
        self._dispatcher.on(MapFrame, self._frame)
        self._watch = task.LoopingCall(self._renew)
        self._watch.clock = clock

    def join(self, watcher) -> None:
        """A stream opened: the first one starts the watch and the updates."""
        self.watchers.add(watcher)
        if len(self.watchers) > 1:
            self.view_changed()
            return
        if self._subscription is None and self._subscribing is None:
            self._subscribing = self.bus.subscribe(MAP_FEED_CHANNEL, self._dispatcher)
            self._subscribing.addCallbacks(self._subscribed, self._not_subscribed)
        self._watch.start(WATCH_EVERY, now=True)

    def leave(self, watcher) -> None:
        """A stream closed: after the last one, nothing more is asked or sent."""
        if watcher not in self.watchers:
            return
        self.watchers.discard(watcher)
        if self.watchers:
            return
        if self._watch.running:
            self._watch.stop()
        self._asked = None
        if self._sending is not None:
            self._sending.cancel()
            self._sending = None
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.cancel().addErrback(log_failure, self.log, "map: unsubscribing failed")

    def _subscribed(self, subscription) -> None:
        self._subscribing = None
        if self.watchers:
            self._subscription = subscription
        else:
            subscription.cancel().addErrback(log_failure, self.log, "map: unsubscribing failed")

    def _not_subscribed(self, failure) -> None:
        self._subscribing = None
        log_failure(failure, self.log, "map: subscribing to the zones' frames failed")
        for watcher in list(self.watchers):
            watcher.fail("the bus is unavailable")

    def viewed(self) -> View | None:
        """The rectangle the watchers' views cover between them (C{None}: none is open)."""
        views = [w.view for w in self.watchers if w.view is not None]
        if not views:
            return None
        return View(
            min(v.x0 for v in views),
            min(v.y0 for v in views),
            max(v.x1 for v in views),
            max(v.y1 for v in views),
        )

    def view_changed(self) -> None:
        """A watcher's view changed: if it shows more than was asked for, ask at once."""
        view, asked = self.viewed(), self._asked
        if view is None or asked is None or not self._watch.running:
            return
        if view.x0 < asked.x0 or view.y0 < asked.y0 or view.x1 > asked.x1 or view.y1 > asked.y1:
            self._renew()

    def _renew(self) -> None:
        self._asked = view = self.viewed()
        watch = MapWatch(WATCH_TTL, None if view is None else [view.x0, view.y0, view.x1, view.y1])
        d = publish(self.bus, MAP_WATCH_CHANNEL, watch, self.sender)
        d.addErrback(log_failure, self.log, "map: asking the zones for frames failed")

    def _frame(self, sender: str, frame: MapFrame) -> None:
        try:
            self.frames.take(frame)
        except (TypeError, ValueError) as e:
            self.log.warn("map: dropped a frame from {sender}: {why}", sender=sender, why=str(e))
            return
        if self._sending is None and self.watchers:
            wait = self._sent_at + 1.0 / SEND_RATE - self.clock.seconds()
            self._sending = self.clock.callLater(max(0.0, wait), self._update)

    def _update(self) -> None:
        self._sending = None
        self._sent_at = self.clock.seconds()
        frames = self.frames.current()
        for watcher in list(self.watchers):
            try:
                watcher.update(frames)
            except Exception:
                self.log.failure("map: an update failed")


class MapStream(WebSocketServerProtocol):
    """
    One browser's stream: the world (L{world_message}) when it opens, then
    the updates of its view (the whole map until it says one), except
    while its connection is full (that update is skipped: the next one
    has everything).
    """

    log = Logger()
    view: View | None = None
    backlog: SendBacklog | None = None

    def onConnect(self, request):
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            raise ConnectionDeny(ConnectionDeny.FORBIDDEN, "the map is for the console's own pages")
        return None

    def onOpen(self) -> None:
        hub = self.factory.hub
        world = hub.world
        self.view = View(0.0, 0.0, world.width, world.height)
        self.backlog = SendBacklog(MAX_UNSENT, self._overflowed)
        # The HTTP channel that upgraded the connection left itself as the
        # transport's producer, though it no longer reads or writes it.
        self.transport.unregisterProducer()
        self.backlog.watch(self)
        self.sendMessage(json.dumps(world_message(world)).encode(), isBinary=False)
        hub.join(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        try:
            if isBinary:
                raise ValueError("send the view as JSON text")
            message = json.loads(payload)
            if not isinstance(message, dict) or "view" not in message:
                raise ValueError('expected {"view": [x0, y0, x1, y1]}')
            self.view = View.parse(message["view"])
            self.factory.hub.view_changed()
        except ValueError as e:
            self.sendMessage(json.dumps({"type": "error", "reason": str(e)}).encode())

    def update(self, frames) -> None:
        """Send the update of this browser's view of C{frames}, unless its connection is full."""
        if self.backlog is not None and self.backlog.paused:
            return
        # autobahn applies the (inbound) message limit to sendMessage as
        # well; the frame API does not check it.
        self.beginMessage(isBinary=True)
        self.sendMessageFrame(encode_update(frames, self.view))
        self.endMessage()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        super().sendData(data, sync, chopsize)
        if self.backlog is not None:
            self.backlog.wrote(len(data))

    def fail(self, reason: str) -> None:
        """Close the stream, telling the browser C{reason}."""
        self.sendClose(code=1011, reason=reason)

    def _overflowed(self, unsent: int) -> None:
        self.log.warn("map: a browser left {unsent} bytes unread; closed", unsent=unsent)
        self.dropConnection(abort=True)

    def onClose(self, wasClean: bool, code, reason) -> None:
        if self.backlog is not None:
            self.backlog.unwatch()
        self.factory.hub.leave(self)


class MapStreamFactory(WebSocketServerFactory):
    """
    The streams' factory: each browser's L{MapStream}, on one L{MapHub}.

    @ivar hub: The L{MapHub}.
    """

    protocol = MapStream

    def __init__(self, hub: MapHub):
        super().__init__()
        self.hub = hub
        self.setProtocolOptions(
            maxMessagePayloadSize=MAX_MESSAGE,
            maxFramePayloadSize=MAX_MESSAGE,
            autoPingInterval=10,
            autoPingTimeout=20,
        )


def _static(name: str, content_type: str) -> static.Data:
    """The package's static file C{name}, read once."""
    return static.Data(
        (resources.files("mmo.console") / "static" / name).read_bytes(), content_type
    )


class MapResource(resource.Resource):
    """
    C{/map}: its page, script and stream, to those C{auth} lets in (see
    the module docstring).

    @ivar hub: The L{MapHub} of the stream.
    """

    def __init__(self, auth, stream: resource.IResource, hub: MapHub):
        super().__init__()
        self.auth = auth
        self.hub = hub
        self.putChild(b"", _static("map.html", "text/html; charset=utf-8"))
        self.putChild(b"map.js", _static("map.js", "text/javascript; charset=utf-8"))
        self.putChild(b"stream", stream)

    def getChildWithDefault(self, path: bytes, request):
        if not self.auth.authorized(request):
            return pages.forbidden()
        return super().getChildWithDefault(path, request)

    def render(self, request):
        if not self.auth.authorized(request):
            return pages.forbidden().render(request)
        return util.redirectTo(request.prePathURL() + b"/", request)


def map_resource(config, bus, reactor, auth) -> resource.IResource:
    """
    The live map of C{config}'s world, fed by C{bus}, for those C{auth}
    (an object with C{authorized(request) -> bool}) lets in: mount it at
    C{/map} of the console's site.
    """
    hub = MapHub(config.world, bus, reactor)
    return MapResource(auth, WebSocketResource(MapStreamFactory(hub)), hub)
