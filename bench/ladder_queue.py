"""
One pass of the ranked queue (L{mmo.ladder.queue.Matchmaker.match}) over
C{--queued} waiting players, in process: the pass as it is (each anchor
walks its neighbours by rating), next to the plain scan (each anchor scans
every later entry and sorts those within its gap; the baseline, measured in
the same run on the same queue), for one-on-one and five-on-five; and the
pass alone over C{--large} players.

    python bench/ladder_queue.py [--queued 3000] [--large 20000] [--repeats 3] [--json]

Ratings are normal around 1500 (deviation 300), join times spread over the
last 30 s, the gap 100 + 10 per second waited, at most 600: most players
are matched in the pass, as after a ladder process took over a full queue.
The figures are medians over C{--repeats}, in milliseconds of CPU time; the
two passes must form the same matches.  C{--profile PATH} profiles one more
pass over C{--large} players, five-on-five.
"""

from __future__ import annotations

import cProfile
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import parser, report  # noqa: E402

from mmo.ladder.queue import Matchmaker, QueueRules, balance, packs  # noqa: E402

MODES = {"1v1": (1, 1), "5v5": (5, 5)}
RULES = {"ranked": QueueRules(MODES, 100.0, 10.0, 600.0, 600.0)}
NOW = 30.0


def queue_of(count: int, mode: str, seed: int = 1) -> Matchmaker:
    """A matchmaker with C{count} solo players queued for C{mode}."""
    rng = random.Random(seed)
    queue = Matchmaker(RULES, new_match_id=lambda: "m")
    for i in range(count):
        queue.join("ranked", mode, [f"p{i}"], [rng.gauss(1500, 300)], rng.uniform(0, NOW))
    return queue


def scanned_pass(queue: Matchmaker, now: float) -> list[tuple]:
    """
    A pass done the plain way, over C{queue}'s entries (left as they are):
    every anchor scans every later entry and sorts those within its gap.
    The matches as C{(mode, teams, gap)}, in the order a pass forms them.
    """
    formed = []
    for (ladder, mode), entries in sorted(queue.queues.items()):
        rules = queue.rules[ladder]
        teams = rules.modes[mode]
        needed = sum(teams)
        waiting = sorted(entries.values(), key=lambda e: (e.joined, e.id))
        taken = set()
        for position, anchor in enumerate(waiting):
            if anchor.id in taken:
                continue
            gap = rules.accepted_gap(now - anchor.joined)
            near = sorted(
                (
                    e
                    for e in waiting[position + 1 :]
                    if e.id not in taken and abs(e.rating - anchor.rating) <= gap
                ),
                key=lambda e: (abs(e.rating - anchor.rating), e.joined, e.id),
            )
            chosen, count = [anchor], len(anchor.players)
            for entry in near:
                if count == needed:
                    break
                size = len(entry.players)
                if count + size <= needed and packs(
                    [len(e.players) for e in chosen] + [size], teams
                ):
                    chosen.append(entry)
                    count += size
            if count == needed and packs([len(e.players) for e in chosen], teams, exact=True):
                taken.update(e.id for e in chosen)
                formed.append((mode, balance(chosen, teams), gap))
    return formed


def timed(work) -> tuple[float, object]:
    """CPU milliseconds of C{work()}, and what it returned."""
    started = time.process_time()
    result = work()
    return (time.process_time() - started) * 1000, result


def main(args) -> None:
    figures: dict = {"queued": args.queued, "large": args.large, "repeats": args.repeats}
    for mode in MODES:
        ours, plain = [], []
        for repeat in range(args.repeats):
            queue = queue_of(args.queued, mode, seed=repeat + 1)
            spent, expected = timed(lambda q=queue: scanned_pass(q, NOW))
            plain.append(spent)
            spent, formed = timed(lambda q=queue: q.match(NOW))
            ours.append(spent)
            assert [(m.mode, m.teams, m.gap) for m in formed] == expected, "the passes differ"
        figures[f"matches_{mode}"] = len(formed)
        figures[f"pass_{mode}_ms"] = statistics.median(ours)
        figures[f"baseline_pass_{mode}_ms"] = statistics.median(plain)
        large = []
        for repeat in range(args.repeats):
            queue = queue_of(args.large, mode, seed=repeat + 1)
            large.append(timed(lambda q=queue: q.match(NOW))[0])
        figures[f"pass_{mode}_ms_large"] = statistics.median(large)
    if args.profile:
        queue = queue_of(args.large, "5v5")
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(queue.match, NOW)
        profiler.dump_stats(args.profile)
    report(figures, args.json)


if __name__ == "__main__":
    p = parser(__doc__.strip().splitlines()[0])
    p.add_argument("--queued", type=int, default=3000, help="players queued, for both passes")
    p.add_argument("--large", type=int, default=20000, help="players queued, for the pass alone")
    p.add_argument("--repeats", type=int, default=3, help="rounds (medians)")
    main(p.parse_args())
