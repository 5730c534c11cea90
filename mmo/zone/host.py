"""
The zones of one C{mmo-zone} process: L{ZoneHost} serves every region of
the world assigned to the process, as one game service for the gateways,
sends them what its zones tell their players on one stream per gateway
(L{mmo.zone.streams}), and replaces a running process of the same name
(C{--takeover}).
"""

from __future__ import annotations

import uuid

from twisted.internet import defer

from mmo.config import ConfigError
from mmo.game import messages
from mmo.game.messages import Released, Relink, gateway_channel, takeover_channel
from mmo.game.service import Caller, GameService, named_subclass
from mmo.jobs.build import service_jobs
from mmo.process import control
from mmo.stats import nearest_rank
from mmo.wire import codes
from mmo.wire.codes import WireError
from mmo.zone.entity import PLAYER
from mmo.zone.service import ZoneService
from mmo.zone.streams import GatewayStreams
from mmo.zone.takeover import STANDBY, TakeoverFailed


class ZoneHost(GameService):
    """
    The zones of one process: a L{ZoneService} for every region of
    C{[world]} whose C{process} is C{process_name}, as one game service for
    the gateways (L{mmo.game.server.serve} serves one).  A message goes
    to the zone named by its caller's C{zone} (the gateway's
    L{mmo.zone.route.ZoneRoute} sets it); session events go to all.

    It also replaces a running process of the same name (C{takeover}): see
    C{docs/world.md}, "Replacing a zone process".  The process's pieces
    that only the serving process may run (its RPC listener, directory
    entry and control subscription) are given by L{attach}; with
    C{takeover} they are started only once the old process released them.

    @ivar zones: Region name -> its L{ZoneService}.
    """

    kind = "zone"
    prefixes = ("zone.",)
    zone_class = None
    #: Seconds the new process waits for the old one to answer C{handover}.
    handover_answer_timeout = 3.0
    #: Seconds the new process waits for the whole handover.
    takeover_timeout = 20.0
    #: Seconds the old process waits for its gateways' links to go before it exits.
    exit_timeout = 15.0
    #: Attempts (0.1 s apart) at binding the RPC port the old process just freed.
    bind_attempts = 50

    def __init__(self, config, store, bus, reactor, process_name: str, takeover: bool = False):
        super().__init__(config, store, bus, reactor)
        if self.zone_class is None:
            self.zone_class = zone_service_class(config)
        world = config.world
        self.process_name = process_name
        self.takeover = takeover
        self.zones = {
            name: self.zone_class(config, store, bus, reactor, name)
            for name, *_box, process in world.layout
            if process == process_name
        }
        if not self.zones:
            raise ConfigError(
                f"no region of the world is served by process {process_name!r}",
                ("world", "zones" if not world.regions else "regions"),
                config.file,
            )
        #: The streams to the gateways (the process's RPC listener follows
        #: their links); the zones send through them once L{attach}ed.
        self.streams = GatewayStreams(bus)
        self.streams.on_linked.append(self.gateway_linked)
        #: Set by L{attach}: see there.
        self.process = None
        #: "serving", "standby", "handing", "handed" or "aborted", for the process.
        self.state = "standby" if takeover else "serving"
        #: Fires when the takeover (this process's) is over: ready to serve.
        self.ready: defer.Deferred = defer.Deferred()
        #: Fires when this process handed everything over and released its port.
        self.released: defer.Deferred = defer.Deferred()

    def attach(self, process) -> None:
        """
        Give the host the process's pieces, a L{ProcessHooks}: it registers
        C{handover} on the control channel, and with C{takeover} starts
        the listener, directory entry and control subscription itself.
        """
        self.process = process
        if process.control is not None:
            process.control.register("handover", self.on_handover)
        if process.factory is not None:
            for zone in self.zones.values():
                zone.stream_to(self.streams)

    def jobs(self) -> list:
        """
        The scheduled jobs of its zones (L{ZoneService.jobs}), as the
        standalone server takes them from its zones: a job's name makes it
        one per deployment (the same name from every zone: it runs once per
        time, on one zone of one process) or one per zone (a name with the
        region's, declared only by the process that serves the region).
        """
        return service_jobs(self.zones.values())

    # -- life cycle --------------------------------------------------------------

    async def start(self) -> None:
        if not self.takeover:
            for zone in self.zones.values():
                await zone.start()
            self.ready.callback(None)
            return
        token = uuid.uuid4().hex
        for zone in self.zones.values():
            await zone.start(standby=token)
        d = defer.ensureDeferred(self._take_over(token))
        d.addErrback(self._takeover_failed)

    async def stop(self) -> None:
        for zone in self.zones.values():
            await zone.stop()

    # -- the new process ---------------------------------------------------------

    async def _take_over(self, token: str) -> None:
        released: defer.Deferred = defer.Deferred()

        def heard(sender, message: Released):
            if message.token == token and not released.called:
                released.callback(None)

        listener = messages.Dispatcher(f"takeover of {self.process_name}")
        listener.on(Released, heard)
        subscription = await self.bus.subscribe(takeover_channel(self.process_name), listener)
        try:
            try:
                await control.call(
                    self.bus,
                    self.process_name,
                    "handover",
                    {"token": token},
                    timeout=self.handover_answer_timeout,
                    reactor=self.reactor,
                )
            except control.NoAnswer:
                self.log.info(
                    "{process}: no process to take over; starting afresh",
                    process=self.process_name,
                )
                for zone in self.zones.values():
                    await zone.start_plain()
                released.callback(None)
            except control.ControlError as e:
                raise TakeoverFailed(str(e)) from None
            self.state = "taking"
            waiting = defer.gatherResults(
                [z.takeover.took_over for z in self.zones.values() if z.mode == STANDBY]
                + [released],
                consumeErrors=True,
            )
            waiting.addTimeout(self.takeover_timeout, self.reactor)
            try:
                await waiting
            except defer.TimeoutError:
                # The old process is gone half-way: what it did not hand over
                # is in the store; recover it (fencing) and serve.
                self.log.warn(
                    "{process}: takeover timed out; recovering", process=self.process_name
                )
                for zone in self.zones.values():
                    if zone.mode == STANDBY:
                        await zone.start_plain()
            except defer.FirstError as e:
                raise e.subFailure.value from None
        finally:
            await subscription.cancel()
        await self._go_live()

    async def _go_live(self) -> None:
        """Bind the RPC port, enter the directory, take control commands, relink gateways."""
        process = self.process
        if process is not None:
            await process.go_live(self.bind_attempts)
            for peer in self.config.processes.values():
                if peer.kind in ("gateway", "mmo"):
                    await messages.publish(
                        self.bus,
                        gateway_channel(peer.name),
                        Relink(self.process_name),
                        self.process_name,
                    )
        self.state = "serving"
        self.log.info("{process}: took over, ready", process=self.process_name)
        self.ready.callback(None)

    def _takeover_failed(self, failure) -> None:
        self.state = "aborted"
        self.log.failure("{process}: takeover failed", failure, process=self.process_name)
        if self.process is not None:
            self.process.fail()
        if not self.ready.called:
            self.ready.errback(failure)
            # Logged above: not an unhandled error as well.
            self.ready.addErrback(lambda _: None)

    # -- the old process ---------------------------------------------------------

    def on_handover(self, token: str) -> dict:
        """
        The C{handover} control command, from a new process of the same
        name in standby: hand every region over to it (in the background)
        and answer at once.
        """
        if not isinstance(token, str) or not token:
            raise ValueError("token must be a non-empty string")
        if self.state != "serving":
            raise control.ControlError(f"{self.process_name} is {self.state}")
        self.state = "handing"
        d = defer.ensureDeferred(self._hand_over(token))
        d.addErrback(lambda f: self.log.failure("{p}: handover", f, p=self.process_name))
        return {"regions": sorted(self.zones)}

    async def _hand_over(self, token: str) -> None:
        results = await defer.DeferredList(
            [defer.ensureDeferred(zone.takeover.hand_over(token)) for zone in self.zones.values()],
            consumeErrors=True,
        )
        if not all(ok for ok, _ in results):
            # Regions that did hand over stay unserved until a restart (the
            # store has them); the others go on here.
            self.state = "serving"
            self.log.warn("{process}: handover aborted", process=self.process_name)
            return
        self.state = "handed"
        if self.process is not None:
            await self.process.release()
        await messages.publish(
            self.bus, takeover_channel(self.process_name), Released(token), self.process_name
        )
        self.log.info("{process}: handed over; released", process=self.process_name)
        self.released.callback(None)
        if self.process is not None:
            self.process.exit_when_idle(self.exit_timeout)

    # -- messages ----------------------------------------------------------------

    async def handle(self, caller: Caller, kind: str, message: dict) -> dict | None:
        zone = self.zones.get(caller.zone)
        if zone is None:
            raise WireError(codes.UNAVAILABLE, f"zone {caller.zone!r} is not served here; retry")
        return await zone.handle(caller, kind, message)

    def refused(self, caller: Caller, kind: str, message: dict, error: WireError) -> None:
        """The caller's zone's (L{ZoneService.refused}), if it is served here."""
        zone = self.zones.get(caller.zone)
        if zone is None:
            super().refused(caller, kind, message, error)
        else:
            zone.refused(caller, kind, message, error)

    def receive(self, to: str, sender: str, message) -> None:
        """A gateway's message for the zone of region C{to} (L{ZoneService.receive})."""
        zone = self.zones.get(to)
        if zone is None:
            raise ValueError(f"zone {to!r} is not served here")
        zone.receive(to, sender, message)

    def gateway_linked(self, gateway: str) -> None:
        """C{gateway}'s stream is up (again): its players' views start over, in every zone."""
        for zone in self.zones.values():
            zone.gateway_linked(gateway)

    async def session_event(self, caller: Caller, event: str) -> None:
        for zone in self.zones.values():
            await zone.session_event(caller, event)

    def held_sessions(self) -> list[Caller]:
        """The players' sessions of every zone here (L{ZoneService.held_sessions})."""
        return [caller for zone in self.zones.values() for caller in zone.held_sessions()]

    def directory_info(self) -> dict:
        """
        The process's load for the directory: C{load} and C{players} (players
        in its regions), C{entities}, C{regions}, C{tick_ms} (the p50, p99
        and max of the recent ticks of all its regions) and C{overruns}.
        """
        players = entities = overruns = 0
        durations: list[float] = []
        for zone in self.zones.values():
            reals = zone.simulation.reals.values()
            entities += len(reals)
            players += sum(1 for e in reals if e.kind == PLAYER)
            overruns += zone.ticker.overruns
            durations.extend(zone.ticker.durations)
        durations.sort()

        def at(fraction: float) -> float:
            return round(nearest_rank(durations, fraction) * 1000, 3)

        return {
            "load": players,
            "players": players,
            "entities": entities,
            "regions": sorted(self.zones),
            "tick_ms": {"p50": at(0.5), "p99": at(0.99), "max": at(1.0)},
            "overruns": overruns,
        }


def zone_service_class(config) -> type[ZoneService]:
    """
    The zone service class named by C{[world] zone_class} (a game's
    subclass with its own messages and rules), or L{ZoneService}.

    @raise ConfigError: It cannot be imported or is no L{ZoneService}.
    """
    return named_subclass(
        config.world.zone_class, ZoneService, ("world", "zone_class"), config.file
    )
