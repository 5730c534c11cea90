"""
Teams of a ranked match: whether parties fit a mode's teams (L{packs}) and
the split of a match's entries into teams of even strength (L{balance}).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmo.ladder.queue import Entry

#: The most team assignments L{balance} tries before it keeps the best so far.
BALANCE_BUDGET = 20000


def packs(sizes: Iterable[int], teams: tuple, exact: bool = False) -> bool:
    """
    Whether parties of C{sizes} fit into teams of sizes C{teams}, each party
    whole in one team (C{exact}: filling every team).
    """
    sizes = sorted(sizes, reverse=True)
    if exact and sum(sizes) != sum(teams):
        return False
    room = list(teams)

    def place(i: int) -> bool:
        if i == len(sizes):
            return True
        tried = set()
        for t, left in enumerate(room):
            if left >= sizes[i] and left not in tried:
                tried.add(left)
                room[t] -= sizes[i]
                if place(i + 1):
                    return True
                room[t] += sizes[i]
        return False

    return place(0)


def balance(entries: list[Entry], teams: tuple) -> tuple:
    """
    The entries' players split into teams of sizes C{teams}, each entry
    whole in one team, with the closest mean ratings found: every split if
    there are few, else the best of the first L{BALANCE_BUDGET} tried
    (largest parties and best ratings placed first, each into the weakest
    team with room, which is also the first split tried).  Deterministic.
    """
    order = sorted(entries, key=lambda e: (-len(e.players), -e.rating, e.id))
    count = len(teams)
    members: list[list[Entry]] = [[] for _ in teams]
    room = list(teams)
    sums = [0.0] * count
    best: list = [None, None]
    budget = [BALANCE_BUDGET]

    def spread() -> float:
        means = [sums[t] / teams[t] for t in range(count)]
        return max(means) - min(means)

    def place(i: int) -> None:
        if budget[0] <= 0:
            return
        if i == len(order):
            budget[0] -= 1
            score = spread()
            if best[0] is None or score < best[0]:
                best[0], best[1] = score, [list(m) for m in members]
            return
        entry = order[i]
        size = len(entry.players)
        weakest = sorted(range(count), key=lambda t: (sums[t] / teams[t], t))
        seen = set()
        for t in weakest:
            # Two empty teams of one size are alike: try one of them.
            shape = (teams[t], room[t]) if not members[t] else None
            if room[t] < size or (shape is not None and shape in seen):
                continue
            if shape is not None:
                seen.add(shape)
            members[t].append(entry)
            room[t] -= size
            sums[t] += entry.rating * size
            place(i + 1)
            sums[t] -= entry.rating * size
            room[t] += size
            members[t].pop()

    place(0)
    if best[1] is None:
        raise ValueError("the parties do not fill the teams")
    return tuple(
        tuple(p for e in sorted(team, key=lambda e: e.id) for p in e.players) for team in best[1]
    )
