"""
The money-supply metrics job (see C{docs/economy.md}, "Money-supply
metrics"): every C{[economy] metrics_interval} seconds, once per
deployment, L{SupplyMetrics} reads the ledger's postings since the last
computation and every currency's balances, records the interval in each
currency's L{SupplyTracker}, and saves what it computed in the store,
where every process reads it: the next run, whichever process leads the
job then, and the C{economy} control command behind C{mmo-admin economy}.

What is saved is one record per run in the store's log L{LOG} (one
atomic append): the last sequence number read, the interval's end and,
per currency, its figures and the price index's chain.  Nothing is kept
in a process between runs, so a takeover or a restart goes on from the
last record, and a run that fails records nothing: the next one reads the
postings from the last saved sequence number and covers the gap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

from twisted.logger import Logger

from mmo.economy.holdings import item_of as instance_item
from mmo.economy.metrics import HOUR, IntervalFigures, SupplyTracker
from mmo.jobs.job import Job
from mmo.schedules import iso_time, parse_schedule
from mmo.store.common_economy import currency as currency_asset

#: The job's name, and its lease's (C{job:economy.metrics}).
JOB_NAME = "economy.metrics"

#: The store log the runs' records go to.
LOG = "economy:metrics"

#: Postings and holders read per store call (the store's largest page).
PAGE = 1000

#: The most postings one run reads: the rest are the next run's.
MAX_POSTINGS = 200_000

#: The most holders of one currency one run reads.
MAX_HOLDERS = 1_000_000


class SupplyError(Exception):
    """A run cannot compute an interval; nothing is recorded."""


def priced_item(asset: str) -> str | None:
    """
    The item definition of a ledger asset, for the price index: a
    stackable item's id (C{i:potion}), or the definition of a unique
    instance (C{u:iron-sword.3f2a...}: C{iron-sword}); C{None} for a
    currency.
    """
    if asset.startswith("i:"):
        return asset[2:]
    if asset.startswith("u:"):
        return instance_item(asset[2:])
    return None


def chain(records: Iterable[Mapping]) -> list[Mapping]:
    """
    The records of C{records} (oldest first) that follow each other, back
    from the last one written under the highest lease token: each starts
    where the one before it ended.  A record of a leader that lost the job
    (a lower token), appended after its successor's, is left out, and so
    are the records it overlaps; every reader, however far back it reads,
    finds the same history, which the next run goes on from.
    """
    records = list(records)
    if not records:
        return []

    def rank(index: int) -> tuple[int, int]:
        token = records[index].get("token")
        return (token if isinstance(token, int) else -1, index)

    anchor = max(range(len(records)), key=rank)
    kept = [records[anchor]]
    for record in reversed(records[:anchor]):
        if kept[-1].get("start") == record["end"]:
            kept.append(record)
    return kept[::-1]


class SupplyMetrics:
    """
    The money-supply metrics of one deployment's economy over its store.

    @ivar section: The config's L{mmo.config.economy.EconomySection}.
    @ivar store: An L{mmo.store.IEconomyStore} (and L{mmo.store.IStore},
        for the log).
    @ivar clock: Gives each interval's end (C{seconds()}).
    """

    log = Logger()

    def __init__(
        self,
        section,
        store,
        clock,
        max_postings: int = MAX_POSTINGS,
        item_of: Callable[[str], str | None] = priced_item,
    ):
        self.section = section
        self.store = store
        self.clock = clock
        self.max_postings = max_postings
        self._item_of = item_of

    def job(self) -> Job:
        """The scheduled job: every C{metrics_interval} seconds, missed times skipped."""
        return Job(
            JOB_NAME,
            parse_schedule(self.section.metrics_interval),
            self.run,
            misfire="skip",
            commands={"economy": self.describe},
        )

    @property
    def _window(self) -> int:
        """The records a run reads back: an hour of intervals (the growth's), at most all kept."""
        hour = math.ceil(HOUR / self.section.metrics_interval) + 2
        return min(hour, self.section.metrics_history + 1)

    async def saved(self, limit: int) -> list[Mapping]:
        """The chain of the last C{limit} records saved (L{chain}), oldest first."""
        return chain(await self.store.read_log(LOG, limit))

    # -- a run ---------------------------------------------------------------------

    async def run(self, run) -> None:
        """The job's handler: L{compute} one interval, under the run's lease."""
        await self.compute(run.token)

    async def compute(self, token: int | None = None) -> dict[str, IntervalFigures]:
        """
        Compute and save the interval since the last saved one: the first
        run of a deployment saves where the ledger is and computes nothing.

        @return: The figures computed, by currency.
        @raise SupplyError: Too many holders to read; nothing saved.
        """
        records = await self.saved(self._window)
        if not records:
            return await self._start(token)
        last = records[-1]
        postings = await self.read_postings(last["seq"])
        seq = postings[-1].seq if postings else last["seq"]
        balances = {name: await self.read_balances(name) for name in self.section.currencies}
        end = self.clock.seconds()
        if not end > last["end"]:
            raise SupplyError(f"the clock ({end}) is not past the last interval's end")
        computed, saved = {}, {}
        for name, currency in self.section.currencies.items():
            tracker = self._tracker(name, currency.supply_alarm, records)
            figures = tracker.record(last["end"], end, postings, balances[name])
            computed[name] = figures
            saved[name] = {"figures": figures.as_dict(), "prices": tracker.saved()}
        record = {"start": last["end"], "end": end, "seq": seq, "token": token, "currencies": saved}
        await self.store.append_log(LOG, record, self.section.metrics_history + 1)
        for figures in computed.values():
            if figures.alarm:
                self._warn(figures)
        return computed

    async def _start(self, token) -> dict:
        """Save the ledger's last sequence number as where the first interval starts."""
        seq = await self._last_seq()
        record = {"start": None, "end": self.clock.seconds(), "seq": seq, "token": token,
                  "currencies": {}}  # fmt: skip
        await self.store.append_log(LOG, record, self.section.metrics_history + 1)
        self.log.info("economy metrics: the first interval starts after posting {seq}", seq=seq)
        return {}

    async def _last_seq(self) -> int:
        """
        The ledger's last sequence number, found by doubling then halving
        (numbers have no gaps: C{after} is below it when a posting follows
        C{after}), in a few dozen reads however long the ledger.
        """

        async def beyond(after: int) -> bool:
            return bool(await self.store.economy_postings(after, 1))

        low, high = 0, 1
        while await beyond(high):
            low, high = high, high * 2
        # The last number is in [low, high).
        while high - low > 1:
            middle = (low + high) // 2
            if await beyond(middle):
                low = middle
            else:
                high = middle
        return high if low or await beyond(0) else 0

    async def read_postings(self, after: int) -> list:
        """The postings numbered after C{after}, at most L{max_postings}."""
        found: list = []
        while len(found) < self.max_postings:
            page = await self.store.economy_postings(
                after, min(PAGE, self.max_postings - len(found))
            )
            found += page
            if not page:
                return found
            after = page[-1].seq
        if await self.store.economy_postings(after, 1):
            self.log.warn(
                "economy metrics: more than {count} postings since the last run; "
                "the rest go to the next interval",
                count=self.max_postings,
            )
        return found

    async def read_balances(self, name: str) -> dict[str, int]:
        """Every holder's balance of currency C{name}."""
        asset, found, after = currency_asset(name), {}, None
        while True:
            page = await self.store.economy_holders(asset, PAGE, after)
            found.update(page)
            if len(page) < PAGE:
                return found
            if len(found) >= MAX_HOLDERS:
                raise SupplyError(f"more than {MAX_HOLDERS} holders of {asset}")
            after = page[-1][0]

    def _tracker(self, name: str, supply_alarm: float, records: list[Mapping]) -> SupplyTracker:
        """Currency C{name}'s tracker, resumed from the saved C{records}."""
        tracker = SupplyTracker(name, supply_alarm, self.section.metrics_history, self._item_of)
        kept = [r["currencies"][name] for r in records if name in r["currencies"]]
        tracker.resume(
            (IntervalFigures.from_dict(k["figures"]) for k in kept),
            kept[-1]["prices"] if kept else None,
        )
        return tracker

    def _warn(self, figures: IntervalFigures) -> None:
        self.log.warn(
            "economy: supply alarm: {currency} grows {growth:.1%} per hour, above its "
            "supply_alarm of {alarm:.1%} (supply {supply} at {end})",
            currency=figures.currency,
            growth=figures.growth_per_hour,
            alarm=self.section.currencies[figures.currency].supply_alarm,
            supply=figures.supply,
            end=iso_time(figures.end),
        )

    # -- what mmo-admin economy shows --------------------------------------------------

    async def describe(self, history: int = 1, currency: str | None = None) -> dict:
        """
        The C{economy} control command: the last C{history} intervals'
        figures of each currency (or of C{currency}), newest first.

        @raise ValueError: No such currency, or a bad C{history}.
        """
        if isinstance(history, bool) or not isinstance(history, int) or history < 1:
            raise ValueError(f"history is a number of intervals, at least 1, got {history!r}")
        currencies = self.section.currencies
        if currency is not None and currency not in currencies:
            raise ValueError(f"no currency {currency!r} (currencies: {', '.join(currencies)})")
        limit = min(history, self.section.metrics_history) + 1
        records = await self.saved(limit)
        shown = []
        for name, config in currencies.items():
            if currency is not None and name != currency:
                continue
            figures = [r["currencies"][name]["figures"] for r in records if name in r["currencies"]]
            shown.append(
                {
                    "currency": name,
                    "decimals": config.decimals,
                    "supply_alarm": config.supply_alarm,
                    "figures": figures[::-1][:history],
                }
            )
        last_run = records[-1]["end"] if records else None
        return {
            "interval": self.section.metrics_interval,
            "last_run": last_run,
            "currencies": shown,
        }


def economy_jobs(config, store, bus=None, clock=None) -> list[Job]:
    """
    The economy's scheduled jobs, for its service's C{jobs()}: the
    money-supply metrics (L{SupplyMetrics}); none when the economy is off.
    """
    if not config.economy.enabled:
        return []
    if clock is None:
        from twisted.internet import reactor as clock
    return [SupplyMetrics(config.economy, store, clock).job()]
