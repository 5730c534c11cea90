"""
The bots and the run: L{Swarm} starts L{Bot}s at the ramp's rate, lets
them play their scenario for the run's duration, checks what they see,
shows progress and stops them cleanly; L{Swarm.report} is the end report.

Everything happens on one reactor, never a sleep: the bots' periodic work
shares one C{LoopingCall} per interval and their fire-and-forget requests
one timeout sweep (L{mmo.bot.timers}); every request has a timeout.
"""

from __future__ import annotations

import gc
import random
import sys
from dataclasses import dataclass, field

from twisted.internet import defer, task

from mmo.bot import geometry, views
from mmo.bot.client import BotClient
from mmo.bot.ranked import RankedPlay
from mmo.bot.scenario import LOBBY, Scenario
from mmo.bot.stats import Stats, error_code, format_report, problems
from mmo.bot.timers import Deadlines, Metronome
from mmo.bot.trader import TraderPlay
from mmo.client import Client, ConnectionClosed, ServerError, StdlibTLS, connect

#: Error codes after which a bot tries to get in again (at most RETRIES times).
#: Not C{throttled}: the login server's windows last minutes, and retrying
#: only adds to its counts.
RETRYABLE = {"busy", "unavailable", "timeout", "connect_failed"}
RETRIES = 3

#: The play of each lobby scenario (L{mmo.bot.play}).
PLAYS = {"ranked": RankedPlay, "trader": TraderPlay}

#: Duplicated or lost entities shown in the report, at most.
EXAMPLES = 20

#: Seconds between two checks of who sees whom, and the margin under aoi_radius.
VIEW_CHECK_INTERVAL = 5.0
VIEW_MARGIN = 10.0
#: A bot is part of the view check once it has been in the world this long.
VIEW_SETTLE = 2.0


@dataclass
class Options:
    """What the command line asked for."""

    login_host: str
    login_port: int
    ca: str | None = None
    hostname: str = "localhost"
    bots: int = 10
    duration: float = 60.0
    ramp: float = 20.0
    login_concurrency: int = 16
    max_seconds: float | None = None
    prefix: str = "bot"
    password: str = "load-test-Pass-42"
    world: geometry.World | None = None
    seed: int | None = None
    progress: object = field(default=sys.stderr, repr=False)


class Stopped(Exception):
    """The run is stopping: a bot gives up getting in."""


class Bot:
    """
    One player: an account C{name}, its client, its view and its scenario.

    @ivar state: C{"waiting"}, C{"connecting"}, C{"in"} (in the world, or
        for C{login-storm} done a cycle), C{"failed"} or C{"dropped"}.
    """

    def __init__(self, swarm: Swarm, index: int):
        self.swarm = swarm
        self.index = index
        self.name = f"{swarm.options.prefix}{index:05d}"
        self.state = "waiting"
        self.client: Client | None = None
        self.closing = False
        self.registered = False
        self.tracker = views.ViewTracker()
        self.tracker.clock = lambda: swarm.reactor.seconds() - swarm.started
        self.gateway: tuple[str, int] | None = None
        self.display: str | None = None
        self.seq = 0
        self.entered_at: float | None = None
        self.resumed = False
        self.loops: list = []
        self.walker = None
        self.chat_count = 0
        self.handoffs = 0
        self.chat_pending: dict[int, float] = {}
        self.rng = random.Random(f"{swarm.seed}:{index}")
        play = PLAYS.get(swarm.scenario.name)
        self.play = play(self) if play is not None else None

    # -- getting in ------------------------------------------------------------

    async def start(self) -> None:
        """Log in and enter the world, retrying what may pass; never raises."""
        self.state = "connecting"
        code = "unknown"
        for attempt in range(RETRIES + 1):
            if self.swarm.stopping:
                code = "stopped"
                break
            try:
                await self.join()
            except Stopped:
                code = "stopped"
                break
            except Exception as e:
                code = "stopped" if self.swarm.stopping else error_code(e)
                await self.drop_client()
                if code not in RETRYABLE or attempt == RETRIES:
                    break
                await task.deferLater(self.swarm.reactor, 1.0 + self.rng.random(), lambda: None)
                continue
            self.state = "in"
            self.entered_at = self.swarm.reactor.seconds()
            self.start_scenario()
            return
        self.state = "failed"
        self.swarm.stats.failed(code)

    async def drop_client(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            self.closing = True
            client.close()

    async def ticket(self) -> dict:
        """Register (once) and log in at the login server: the login reply."""
        swarm = self.swarm
        async with swarm.login_slots:
            if swarm.stopping:
                raise Stopped()
            client = await swarm.connect(swarm.options.login_host, swarm.options.login_port)
            try:
                password = swarm.options.password
                if not self.registered:
                    try:
                        await swarm.request(client, "register", name=self.name, password=password)
                    except ServerError as e:
                        # An account of an earlier run, or registrations throttled:
                        # the login tells whether it exists.
                        if e.code not in ("name_taken", "throttled"):
                            raise
                        try:
                            reply = await swarm.request(
                                client, "login", name=self.name, password=password
                            )
                        except ServerError as refused:
                            if e.code == "throttled" and refused.code == "login_failed":
                                raise e
                            raise
                        self.registered = True
                        return reply
                    self.registered = True
                return await swarm.request(client, "login", name=self.name, password=password)
            finally:
                client.close()

    async def join(self) -> None:
        swarm = self.swarm
        # A new session: its client starts with nothing in view.
        self.tracker.view.clear()
        ticket = await self.ticket()
        if swarm.stopping:
            raise Stopped()
        gateway = ticket["gateway"]
        self.gateway = (gateway["host"], gateway["port"])
        client = BotClient(self.tracker.feed, self.swarm.answered)
        self.attach(client)
        self.closing = False
        self.client = client
        await swarm.connect(gateway["host"], gateway["port"], client=client)
        await swarm.request(client, "auth", ticket=ticket["ticket"])
        if swarm.scenario.name == "login-storm":
            return
        listed = await swarm.request(client, "character.list")
        if listed.get("characters"):
            character = listed["characters"][0]
        else:
            created = await swarm.request(client, "character.create", name=f"{self.name}-c")
            character = created["character"]
        self.display = character.get("name", "")
        await swarm.request(client, "character.choose", character=character["id"])
        if self.play is not None:
            # Played in the lobby: no world.
            client.whenClosed().addCallback(self.closed, client)
            return
        await swarm.request(client, "world.enter")
        if swarm.stopping:
            raise Stopped()
        entered = await swarm.request(client, "zone.enter")
        self.tracker.own = entered["entity"]
        self.tracker.place(entered["x"], entered["y"])
        self.seq = entered.get("input", 0) or 0
        client.whenClosed().addCallback(self.closed, client)

    def attach(self, client: Client) -> None:
        """Listen to C{client}'s pushes (before it connects or resumes)."""
        client.on("world.correct", self.corrected)
        client.on("zone.changed", self.zone_changed)
        client.on("moved", self.moved)
        if self.swarm.scenario.name == "chat":
            client.on("chat.message", self.chat_message)
        if self.play is not None:
            self.play.attach(client)

    # -- pushes ------------------------------------------------------------------

    def corrected(self, push: dict) -> None:
        self.swarm.stats.corrections += 1
        here = (push["x"], push["y"])
        self.tracker.place(*here)
        if self.walker is not None:
            self.walker.reset(here)

    def zone_changed(self, push: dict) -> None:
        self.handoffs += 1
        self.swarm.stats.handoffs += 1

    def moved(self, push: dict) -> None:
        self.swarm.stats.moves_followed += 1
        self.gateway = (push["host"], push["port"])

    def chat_message(self, push: dict) -> None:
        stats = self.swarm.stats
        stats.chat_delivered += 1
        text = push.get("text")
        if push.get("from") != self.display or not isinstance(text, str):
            return
        head, _, number = text.rpartition(" ")
        if head == self.name and number.isdigit():
            sent = self.chat_pending.pop(int(number), None)
            if sent is not None:
                stats.latency("chat.delivery", self.swarm.reactor.seconds() - sent)

    # -- dropped connections ---------------------------------------------------------

    def closed(self, why: ConnectionClosed, client: Client) -> None:
        if self.closing or client is not self.client:
            return
        self.stop_scenario()
        self.swarm.stats.disconnected(why.code, unexplained=True)
        resumption = client.resumption()
        if self.resumed or resumption is None or self.swarm.stopping or self.gateway is None:
            self.state = "dropped"
            return
        self.resumed = True
        defer.ensureDeferred(self.resume(resumption))

    async def resume(self, resumption) -> None:
        """Once per bot: resume the session that dropped, on its gateway."""
        client = BotClient(self.tracker.feed, self.swarm.answered)
        self.attach(client)
        self.client = client
        try:
            await self.swarm.connect(*self.gateway, client=client, resume=resumption)
        except Exception:
            self.state = "dropped"
            self.client = None
            return
        self.swarm.stats.resumed += 1
        client.whenClosed().addCallback(self.closed, client)
        if not self.swarm.stopping:
            self.start_scenario()

    # -- the scenario --------------------------------------------------------------

    def start_scenario(self) -> None:
        swarm, scenario = self.swarm, self.swarm.scenario
        if scenario.name == "idle":
            self.every(scenario.ping_interval, self.ping)
        elif scenario.name == "chat":
            self.every(scenario.chat_interval, self.chat)
        elif scenario.name in ("wander", "border-walk"):
            if self.walker is None:
                here = self.tracker.position
                step = swarm.options.world.max_step(scenario.move_interval, scenario.speed)
                if scenario.name == "wander":
                    self.walker = geometry.Wanderer(
                        swarm.options.world,
                        step,
                        here,
                        self.rng,
                        scenario.turn_interval / scenario.move_interval,
                    )
                else:
                    self.walker = geometry.BorderWalker(
                        swarm.lanes[self.index], step, here, scenario.weave or None
                    )
            self.every(scenario.move_interval, self.move)
        elif self.play is not None:
            self.play.start()

    def every(self, interval: float, work) -> None:
        """Call C{work} every C{interval} seconds, from a random moment of the first."""
        metronome = self.swarm.metronome(interval)
        self.loops.append((metronome, metronome.add(work, self.rng.uniform(0, interval))))

    def stop_scenario(self) -> None:
        if self.play is not None:
            self.play.stop()
        loops, self.loops = self.loops, []
        for metronome, key in loops:
            metronome.remove(key)

    def usable(self) -> bool:
        client = self.client
        return client is not None and not client.closing

    def ping(self) -> None:
        if self.usable():
            self.swarm.fire(self.client, "ping")

    def move(self) -> None:
        if not self.usable():
            return
        x, y = self.walker.next()
        self.seq += 1
        self.swarm.fire(self.client, "zone.move", seq=self.seq, x=x, y=y)

    def chat(self) -> None:
        if not self.usable():
            return
        self.chat_count += 1
        now = self.swarm.reactor.seconds()
        self.chat_pending[self.chat_count] = now
        if len(self.chat_pending) > 50:
            # Never delivered: forget the oldest.
            del self.chat_pending[min(self.chat_pending)]
        self.swarm.stats.chat_sent += 1
        self.swarm.fire(
            self.client,
            "chat.send",
            channel=self.swarm.scenario.channel,
            text=f"{self.name} {self.chat_count}",
        )

    def stop(self) -> defer.Deferred | None:
        """Stop playing and say goodbye."""
        self.stop_scenario()
        client = self.client
        if client is None or client.closing:
            return None
        self.closing = True
        return client.close()


class Swarm:
    """
    A run of many bots on one reactor.

    @ivar stopped_by: C{"completed"}, C{"interrupted"} or C{"max_seconds"}.
    """

    def __init__(self, reactor, options: Options, scenario: Scenario, stats: Stats | None = None):
        self.reactor = reactor
        self.options = options
        self.scenario = scenario
        self.stats = stats or Stats()
        self.seed = options.seed if options.seed is not None else random.randrange(1 << 30)
        self.login_slots = defer.DeferredSemaphore(options.login_concurrency)
        self.bots = [Bot(self, i) for i in range(options.bots)]
        self.lanes: list[geometry.Lane] = []
        if scenario.name == "border-walk":
            self.lanes = geometry.lanes(
                options.world, options.bots, scenario.span, scenario.spacing
            )
        self.stopping = False
        self.stopped_by = "completed"
        self._metronomes: dict[float, Metronome] = {}
        self._tls: dict[tuple[str, int], StdlibTLS] = {}
        self.deadlines = Deadlines(reactor, scenario.request_timeout)
        self.started = reactor.seconds()
        self.ramp_seconds = 0.0
        self.scenario_started: float | None = None
        self.finished: float | None = None
        self._last_requests = 0
        self._last_progress = 0.0
        self._progress_tty = bool(getattr(options.progress, "isatty", lambda: False)())

    # -- requests ------------------------------------------------------------

    def tls(self, host: str, port: int) -> StdlibTLS:
        """
        The TLS of every bot's connections to C{host:port}: one context
        (the CA read once, not for every connection) that resumes the
        server's last session, as a player's client does when it comes back.
        Python's C{ssl} module does it: a push's record costs the bot a
        third of what Twisted's TLS over pyOpenSSL does.
        """
        tls = self._tls.get((host, port))
        if tls is None:
            tls = self._tls[(host, port)] = StdlibTLS(self.options.hostname, self.options.ca)
        return tls

    def connect(self, host: str, port: int, client: Client | None = None, resume=None):
        """Connect (and handshake) with the run's CA and name; timed as C{connect}."""
        opts = self.options
        started = self.reactor.seconds()
        d = connect(
            self.reactor,
            host,
            port,
            ca=opts.ca,
            hostname=opts.hostname,
            timeout=self.scenario.request_timeout,
            client=client,
            resume=resume,
            tls=self.tls(host, port),
        )
        return self.timed(d, "resume" if resume is not None else "connect", started)

    def request(self, client: Client, kind: str, **fields) -> defer.Deferred:
        """C{client.request}, timed and counted, with the scenario's timeout."""
        started = self.reactor.seconds()
        d = client.request(kind, **fields)
        d.addTimeout(self.scenario.request_timeout, self.reactor)
        return self.timed(d, kind, started)

    def metronome(self, interval: float) -> Metronome:
        """The one timer of every bot's work every C{interval} seconds."""
        metronome = self._metronomes.get(interval)
        if metronome is None:
            metronome = self._metronomes[interval] = Metronome(self.reactor, interval)
        return metronome

    def timed(self, d: defer.Deferred, kind: str, started: float) -> defer.Deferred:
        """
        Count C{d}'s outcome under C{kind} (L{answered}): its latency since
        C{started}, or its error code.
        """

        def ok(result):
            self.answered((kind, started), None)
            return result

        def bad(failure):
            self.answered((kind, started), error_code(failure))
            return failure

        return d.addCallbacks(ok, bad)

    def answered(self, request: tuple[str, float], code: str | None) -> None:
        """
        Count the outcome of C{request}, C{(kind, sent at)}: answered
        (C{code} C{None}) or failed with C{code}.  Requests cut off by the
        run's own goodbye at the end are not errors.
        """
        kind, started = request
        if code is None:
            self.stats.latency(kind, self.reactor.seconds() - started)
        elif not (self.stopping and code == "closed"):
            self.stats.error(kind, code)

    def fire(self, client: Client, kind: str, **fields) -> None:
        """
        A request whose reply only counts; its timeout is one of the swarm's
        L{Deadlines} (the bots fire one every move: no timer each).  A bot's
        client answers it without a Deferred (L{BotClient.fire}).
        """
        started = self.reactor.seconds()
        if isinstance(client, BotClient):
            request_id = client.fire((kind, started), kind, **fields)
            if request_id is not None:
                self.deadlines.expect(client.expire, request_id)
                return
        d = self.deadlines.add(client.request(kind, **fields))
        self.timed(d, kind, started).addErrback(lambda _: None)

    # -- the run ---------------------------------------------------------------

    def stop(self, why: str) -> None:
        """Stop the run early (C{why}: C{"interrupted"} or C{"max_seconds"})."""
        if not self.stopping:
            self.stopping = True
            self.stopped_by = why

    async def wait(self, condition, seconds: float | None = None) -> None:
        """Until C{condition()}, the run stops, or C{seconds} pass."""
        end = None if seconds is None else self.reactor.seconds() + seconds
        while not self.stopping and not condition():
            if end is not None and self.reactor.seconds() >= end:
                return
            await task.deferLater(self.reactor, 0.1, lambda: None)

    async def run(self) -> dict:
        """Run the whole thing; the report."""
        opts = self.options
        limit = opts.max_seconds
        if limit is None:
            limit = opts.duration + opts.bots / opts.ramp + 600.0
        hard = self.reactor.callLater(limit, self.stop, "max_seconds")
        progress = task.LoopingCall(self.progress)
        progress.clock = self.reactor
        progress.start(1.0, now=False)
        checks = None
        if opts.world is not None and self.scenario.name not in ("login-storm", *LOBBY):
            checks = task.LoopingCall(self.check_views)
            checks.clock = self.reactor
            checks.start(VIEW_CHECK_INTERVAL, now=False)
        try:
            if self.scenario.name == "login-storm":
                await self.storm()
            else:
                await self.ramp()
                self.ramp_seconds = self.reactor.seconds() - self.started
                # What the ramp made (the bots, their connections) lives to
                # the end of the run: out of the collector's full passes,
                # which would otherwise walk all of it again and again.
                gc.freeze()
                self.scenario_started = self.reactor.seconds()
                self.stats.open_window(self.counts()["in"])
                pushes = self.pushes()
                self.progress(mark="window start")
                await self.wait(lambda: False, opts.duration)
                self.stats.close_window(
                    self.reactor.seconds() - self.scenario_started, self.pushes() - pushes
                )
                self.progress(mark="window end")
        finally:
            gc.unfreeze()
            self.finished = self.reactor.seconds()
            if self.scenario_started is None:
                self.scenario_started = self.finished
            self.stopping = True
            for loop in (progress, checks):
                if loop is not None and loop.running:
                    loop.stop()
            if hard.active():
                hard.cancel()
            await self.close_all()
            for metronome in self._metronomes.values():
                metronome.stop()
            self.deadlines.stop()
            self.progress(final=True)
        return self.report()

    async def ramp(self) -> None:
        """Start the bots at the ramp's rate; until every one is in or failed."""
        interval = 1.0 / self.options.ramp
        pending = list(self.bots)
        started = []

        def launch():
            if self.stopping or not pending:
                if launcher.running:
                    launcher.stop()
                return
            bot = pending.pop(0)
            started.append(defer.ensureDeferred(bot.start()))

        launcher = task.LoopingCall(launch)
        launcher.clock = self.reactor
        launcher.start(interval, now=True)
        await self.wait(
            lambda: not pending and all(b.state not in ("waiting", "connecting") for b in self.bots)
        )
        if launcher.running:
            launcher.stop()
        if self.stopping:
            # Those still getting in give up at their next step.
            await self.wait_for_starts(started)

    async def wait_for_starts(self, started) -> None:
        d = defer.DeferredList(started, consumeErrors=True)
        d.addTimeout(self.scenario.request_timeout + 1, self.reactor)
        try:
            await d
        except defer.TimeoutError:
            pass

    async def storm(self) -> None:
        """C{login-storm}: log in, auth and close, over and over, C{concurrency} at a time."""
        self.ramp_seconds = 0.0
        self.scenario_started = self.reactor.seconds()
        end = self.scenario_started + self.options.duration
        accounts = iter(range(1 << 62))
        workers = min(self.scenario.concurrency, len(self.bots))
        failures: dict[int, str] = {}

        async def worker():
            while not self.stopping and self.reactor.seconds() < end:
                bot = self.bots[next(accounts) % len(self.bots)]
                if bot.state == "connecting":
                    await task.deferLater(self.reactor, 0.01, lambda: None)
                    continue
                before = bot.state
                bot.state = "connecting"
                try:
                    await bot.join()
                    bot.closing = True
                    if bot.client is not None:
                        await bot.client.close()
                except Stopped:
                    bot.state = before
                    break
                except Exception as e:
                    failures[bot.index] = error_code(e)
                    await bot.drop_client()
                    bot.state = "in" if before == "in" else "waiting"
                    continue
                finally:
                    bot.client = None
                self.stats.cycles += 1
                failures.pop(bot.index, None)
                bot.state = "in"

        await defer.DeferredList(
            [defer.ensureDeferred(worker()) for _ in range(workers)], consumeErrors=True
        )
        for bot in self.bots:
            if bot.state != "in":
                bot.state = "failed"
                self.stats.failed(failures.get(bot.index, "not_tried"))

    async def close_all(self) -> None:
        closing = [d for d in (bot.stop() for bot in self.bots) if d is not None]
        if closing:
            d = defer.DeferredList(closing, consumeErrors=True)
            d.addTimeout(5.0, self.reactor)
            try:
                await d
            except defer.TimeoutError:
                pass

    # -- checks and figures -------------------------------------------------------

    def check_views(self) -> None:
        """Every few seconds: bots close to each other must see each other."""
        world = self.options.world
        radius = world.aoi_radius - VIEW_MARGIN
        if radius <= 0:
            return
        settled = self.reactor.seconds() - VIEW_SETTLE
        entries = []
        for bot in self.bots:
            tracker = bot.tracker
            if (
                bot.state == "in"
                and bot.usable()
                and bot.entered_at is not None
                and bot.entered_at <= settled
                and tracker.x is not None
            ):
                entries.append((tracker.own, tracker.x, tracker.y, tracker.view))
        pairs, misses = views.view_misses(entries, radius)
        self.stats.view_checks += 1
        self.stats.view_pairs += pairs
        self.stats.view_misses += misses

    def collect(self) -> None:
        """Sum the bots' view counts into the stats."""
        stats = self.stats
        stats.duplicated = sum(b.tracker.duplicated for b in self.bots)
        stats.lost = sum(b.tracker.lost for b in self.bots)
        stats.resets = sum(b.tracker.resets for b in self.bots)
        stats.pushes = sum(b.tracker.pushes for b in self.bots)
        stats.handed_off = sum(1 for b in self.bots if b.handoffs)
        stats.on_lane = sum(1 for b in self.bots if getattr(b.walker, "on_lane", False))
        stats.examples = [
            {"bot": b.name, **example} for b in self.bots for example in b.tracker.examples
        ][:EXAMPLES]

    def counts(self) -> dict:
        counts = {"in": 0, "connecting": 0, "failed": 0, "dropped": 0, "waiting": 0}
        for bot in self.bots:
            counts[bot.state] += 1
        return counts

    def pushes(self) -> int:
        """Pushes the bots received so far."""
        return sum(b.tracker.pushes for b in self.bots)

    def progress(self, final: bool = False, mark: str = "") -> None:
        """
        A progress line (at most every 5 s unless on a terminal); C{mark}
        (C{"window start"}, C{"window end"}) ends a line printed at once, which
        a benchmark reading the output times its measurements by.
        """
        now = self.reactor.seconds()
        rate = self.stats.requests - self._last_requests
        self._last_requests = self.stats.requests
        if mark:
            final = True
        if not final and not self._progress_tty and now - self._last_progress < 5.0:
            return
        self._last_progress = now
        c = self.counts()
        where = "in" if self.scenario.name == "login-storm" else "in world"
        line = (
            f"[{now - self.started:6.1f}s] {c['in']} {where}, {c['connecting']} connecting, "
            f"{c['failed'] + c['dropped']} failed | {rate} req/s, "
            f"{self.stats.error_count} errors, {self.stats.handoffs} handoffs, "
            f"{self.stats.disconnects} disconnects"
        ) + (f" | {mark}" if mark else "")
        out = self.options.progress
        if out is None:
            return
        if self._progress_tty:
            out.write("\r" + line.ljust(100) + ("\n" if final else ""))
        else:
            out.write(line + "\n")
        out.flush()

    def report(self) -> dict:
        self.collect()
        in_world = sum(1 for b in self.bots if b.state in ("in", "dropped") and b.entered_at)
        if self.scenario.name == "login-storm":
            in_world = sum(1 for b in self.bots if b.state == "in")
        found = problems(len(self.bots), in_world, self.stats)
        if self.stopped_by == "max_seconds":
            found.insert(0, "the run hit --max-seconds")
        end = self.finished if self.finished is not None else self.reactor.seconds()
        scenario_time = end - (self.scenario_started or end)
        return self.stats.report(
            scenario=self.scenario.name,
            asked=len(self.bots),
            in_world=in_world,
            elapsed=end - self.started,
            ramp_seconds=self.ramp_seconds,
            duration=scenario_time,
            storm_seconds=scenario_time if self.scenario.name == "login-storm" else None,
            stopped=self.stopped_by,
            problems=found,
        )


__all__ = ["Bot", "Options", "Swarm", "error_code", "format_report"]
