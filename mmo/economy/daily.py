"""
A daily reward, as a job of the config (C{docs/jobs.md}, C{docs/economy.md}
"Daily rewards"):

    [jobs.daily-gold]
    schedule = "0 4 * * *"
    handler = "mmo.economy.daily:pay_daily"
    kind = "lobby"
    misfire = "catch_up"
    args = { currencies = { gold = 100 }, items = { health-potion = 1 } }

Each run pays every player holding something in the ledger through
L{mmo.economy.rewards.Rewards.reward}, from C{faucet:daily}, under a key
derived from the run's id (its scheduled time) and the player: a run done
again (its leader died, the job caught up) pays nobody twice.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.logger import Logger

from mmo.economy.economy import Economy
from mmo.economy.errors import EconomyError
from mmo.economy.holdings import event_key

log = Logger()

#: Players read per store call (the store's largest page).
PAGE = 1000

#: The most players one run pays.
MAX_PLAYERS = 1_000_000

#: The faucet and the postings' reason by default.
REASON = "daily"


def check_args(args: Mapping, config) -> None:
    """
    Check a job's C{args} against the config's economy when the process
    starts: C{currencies} (name -> amount) and C{items} (id -> count),
    at least one of them, each known and positive; C{reason} a string.

    @raise ValueError: What is wrong, for the operator.
    """
    unknown = set(args) - {"currencies", "items", "reason"}
    if unknown:
        raise ValueError(f"unknown args {sorted(unknown)} (currencies, items, reason)")
    economy = config.economy
    if not economy.enabled:
        raise ValueError("pays from the economy, which is disabled ([economy] enabled = false)")
    paid = 0
    for key, known in (("currencies", economy.currencies), ("items", economy.item_defs)):
        table = args.get(key, {})
        if not isinstance(table, Mapping):
            raise ValueError(f"{key} is a table of names to amounts")
        for name, amount in table.items():
            if name not in known:
                raise ValueError(f"{key}: no {name!r} in the economy ({', '.join(known)})")
            if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
                raise ValueError(f"{key}.{name}: a positive integer, got {amount!r}")
            paid += 1
    if not paid:
        raise ValueError("pays nothing: give currencies or items")
    reason = args.get("reason", REASON)
    if not isinstance(reason, str) or not reason:
        raise ValueError(f"reason is a non-empty string, got {reason!r}")


async def pay_daily(run) -> dict:
    """
    The handler: pay C{run.args}' C{currencies} and C{items} to every
    player holding something, one posting each, keyed
    C{reward:daily:<run id>:<player>}.  A player without room for the
    items is paid nothing (logged); the run stops early when its lease is
    lost (its successor runs it again, paying only whom it did not).

    @return: C{{"paid": players paid (now, or by this run's keys before),
        "unpaid": players refused (no room for the items)}}.
    """
    args = run.args
    check_args(args, run.config)
    economy = Economy(run.config.economy, run.store, run.reactor)
    reason = args.get("reason", REASON)
    counts = {"paid": 0, "unpaid": 0}
    after = None
    while sum(counts.values()) < MAX_PLAYERS:
        page = await run.store.economy_accounts("player", PAGE, after)
        for account in page:
            await _pay(economy, run, account, reason, counts)
        if len(page) < PAGE:
            break
        after = page[-1]
        if not await run.held():
            log.warn("job {job}: run {run} lost its lease; stopped", job=run.job.name, run=run.id)
            break
    log.info(
        "job {job}: run {run} paid {paid} players ({unpaid} refused)",
        job=run.job.name,
        run=run.id,
        **counts,
    )
    return counts


async def _pay(economy, run, account: str, reason: str, counts: dict) -> None:
    player_id = account.partition(":")[2]
    key = event_key(reason, run.id, player_id)
    try:
        await economy.rewards.reward(
            player_id, key, reason, run.args.get("currencies"), run.args.get("items")
        )
    except EconomyError as e:
        counts["unpaid"] += 1
        log.warn("job {job}: {account} not paid: {e}", job=run.job.name, account=account, e=e)
        return
    counts["paid"] += 1


pay_daily.check_args = check_args
