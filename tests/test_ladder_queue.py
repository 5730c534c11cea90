"""
The ranked queue (L{mmo.ladder.queue}): joins and leaves, the gap that
widens with waiting, team balancing, its state as plain values, and, with
hypothesis, that no player is matched twice, every match is within the gap
of its longest waiter and nobody starves while someone close enough waits.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mmo.ladder.queue import Entry, Matchmaker, QueueError, QueueRules, balance, packs
from tests.support import load_bench

BOUNDED = settings(max_examples=150, deadline=None)

MODES = {"duel": (1, 1), "2v2": (2, 2), "3v3": (3, 3), "ffa": (1, 1, 1, 1)}


def rules(gap=100.0, growth=10.0, gap_max=500.0, timeout=60.0) -> dict:
    return {"duel": QueueRules(MODES, gap, growth, gap_max, timeout)}


def counter():
    numbers = itertools.count(1)
    return lambda: f"m{next(numbers)}"


class JoinTests(unittest.TestCase):
    def setUp(self):
        self.queue = Matchmaker(rules(), counter())

    def test_join_and_leave(self):
        entry = self.queue.join("duel", "duel", ["a"], [1500], now=0.0)
        self.assertEqual(entry, Entry("a", ("a",), 1500.0, 0.0))
        self.assertEqual(self.queue.entry_of("a"), ("duel", "duel", entry))
        self.assertEqual(self.queue.leave("a"), entry)
        self.assertIsNone(self.queue.entry_of("a"))
        self.assertIsNone(self.queue.leave("a"))
        self.assertEqual(self.queue.queues, {})

    def test_unknown_mode_or_ladder(self):
        for ladder, mode in (("duel", "5v5"), ("chess", "duel")):
            e = self.assertRaises(QueueError, self.queue.join, ladder, mode, ["a"], [1], 0.0)
            self.assertEqual(e.code, "no_mode")

    def test_queued_twice_refused(self):
        self.queue.join("duel", "duel", ["a"], [1500], 0.0)
        e = self.assertRaises(QueueError, self.queue.join, "duel", "2v2", ["b", "a"], [1, 2], 0.0)
        self.assertEqual(e.code, "queued")
        # Nothing of the refused party stayed.
        self.assertIsNone(self.queue.entry_of("b"))

    def test_in_match_refused_until_finished(self):
        self.queue.join("duel", "duel", ["a"], [1500], 0.0)
        self.queue.join("duel", "duel", ["b"], [1500], 0.0)
        [match] = self.queue.match(1.0)
        e = self.assertRaises(QueueError, self.queue.join, "duel", "duel", ["a"], [1500], 2.0)
        self.assertEqual(e.code, "in_match")
        self.assertEqual(self.queue.match_of("a"), match)
        self.assertEqual(self.queue.finish(match.id, 3.0), match)
        self.assertIsNone(self.queue.match_of("a"))
        self.assertIsNone(self.queue.finish(match.id, 3.0))
        self.assertEqual(self.queue.known(match.id), match)
        self.queue.join("duel", "duel", ["a"], [1500], 4.0)

    def test_party_too_big(self):
        e = self.assertRaises(
            QueueError, self.queue.join, "duel", "2v2", ["a", "b", "c"], [1, 2, 3], 0.0
        )
        self.assertEqual(e.code, "party_size")

    def test_party_rating_is_the_mean(self):
        entry = self.queue.join("duel", "2v2", ["a", "b"], [1000, 2000], 0.0)
        self.assertEqual(entry.rating, 1500.0)
        self.assertEqual(self.queue.leave("b"), entry)
        self.assertIsNone(self.queue.entry_of("a"))


class GapTests(unittest.TestCase):
    def test_gap_widens_with_waiting_up_to_the_max(self):
        r = QueueRules(MODES, 100.0, 10.0, 300.0, 60.0)
        self.assertEqual(r.accepted_gap(0), 100.0)
        self.assertEqual(r.accepted_gap(5), 150.0)
        self.assertEqual(r.accepted_gap(1000), 300.0)

    def test_far_players_match_once_the_gap_reaches_them(self):
        queue = Matchmaker(rules(gap=100, growth=10), counter())
        queue.join("duel", "duel", ["a"], [1000], 0.0)
        queue.join("duel", "duel", ["b"], [1250], 0.0)
        self.assertEqual(queue.match(10.0), [])  # gap 200
        [match] = queue.match(15.0)  # gap 250
        self.assertEqual(sorted(match.players), ["a", "b"])
        self.assertEqual(match.gap, 250.0)

    def test_nearest_rating_first(self):
        queue = Matchmaker(rules(), counter())
        for name, rating in (("a", 1500), ("b", 1590), ("c", 1520), ("d", 1560)):
            queue.join("duel", "duel", [name], [rating], 0.0)
        first, second = queue.match(0.0)
        self.assertEqual(sorted(first.players), ["a", "c"])
        self.assertEqual(sorted(second.players), ["b", "d"])

    def test_timeout_frees_players(self):
        queue = Matchmaker(rules(timeout=30), counter())
        queue.join("duel", "duel", ["a"], [1], 0.0)
        queue.join("duel", "duel", ["b"], [1], 0.0)
        [match] = queue.match(0.0)
        self.assertEqual(queue.expire(29.0), [])
        self.assertEqual(queue.expire(30.0), [match])
        self.assertIsNone(queue.match_of("a"))
        self.assertEqual(queue.known(match.id), match)
        queue.expire(60.0)
        self.assertIsNone(queue.known(match.id))


class TeamTests(unittest.TestCase):
    def test_packs(self):
        self.assertTrue(packs([2, 1, 1], (2, 2), exact=True))
        self.assertFalse(packs([2, 1], (2, 2), exact=True))
        self.assertTrue(packs([2, 1], (2, 2)))
        self.assertFalse(packs([3], (2, 2)))
        self.assertFalse(packs([2, 2, 1], (2, 2)))

    def test_balance_solo(self):
        entries = [
            Entry(p, (p,), r, 0.0) for p, r in zip("abcd", (1000, 1100, 1200, 1300), strict=True)
        ]
        teams = balance(entries, (2, 2))
        self.assertEqual(sorted(sorted(t) for t in teams), [["a", "d"], ["b", "c"]])

    def test_balance_keeps_parties_together(self):
        entries = [
            Entry("a", ("a", "b"), 1500, 0.0),
            Entry("c", ("c",), 1400, 0.0),
            Entry("d", ("d",), 1600, 0.0),
        ]
        teams = balance(entries, (2, 2))
        self.assertIn(("a", "b"), teams)
        self.assertIn(("c", "d"), teams)

    def test_party_matched_into_one_team(self):
        queue = Matchmaker(rules(), counter())
        queue.join("duel", "2v2", ["a", "b"], [1500, 1500], 0.0)
        queue.join("duel", "2v2", ["c"], [1450], 0.0)
        self.assertEqual(queue.match(0.0), [])
        queue.join("duel", "2v2", ["d"], [1550], 0.0)
        [match] = queue.match(0.0)
        self.assertEqual(sorted(match.teams), [("a", "b"), ("c", "d")])

    def test_two_parties_of_two_do_not_make_a_3v3(self):
        queue = Matchmaker(rules(), counter())
        queue.join("duel", "3v3", ["a", "b"], [1, 1], 0.0)
        queue.join("duel", "3v3", ["c", "d"], [1, 1], 0.0)
        queue.join("duel", "3v3", ["e", "f"], [1, 1], 0.0)
        self.assertEqual(queue.match(0.0), [])
        queue.join("duel", "3v3", ["g"], [1], 0.0)
        queue.join("duel", "3v3", ["h"], [1], 0.0)
        [match] = queue.match(0.0)
        self.assertEqual(len(match.players), 6)
        self.assertEqual(sorted(len(t) for t in match.teams), [3, 3])


class SnapshotTests(unittest.TestCase):
    def test_round_trip(self):
        queue = Matchmaker(rules(), counter())
        queue.join("duel", "duel", ["a"], [1500], 0.0)
        queue.join("duel", "duel", ["b"], [1500], 1.0)
        [match] = queue.match(2.0)
        queue.join("duel", "2v2", ["c", "d"], [1400, 1600], 3.0)
        queue.join("duel", "duel", ["e"], [1000], 4.0)
        other = Matchmaker(rules(), counter())
        other.restore(queue.snapshot())
        self.assertEqual(other.snapshot(), queue.snapshot())
        self.assertEqual(other.match_of("a"), match)
        self.assertEqual(other.entry_of("d")[2].joined, 3.0)
        self.assertRaises(QueueError, other.join, "duel", "duel", ["e"], [1], 5.0)
        # A finished match is remembered across the move too.
        queue.finish(match.id, 5.0)
        third = Matchmaker(rules(), counter())
        third.restore(queue.snapshot())
        self.assertEqual(third.known(match.id), match)
        self.assertIsNone(third.match_of("a"))

    def test_queues_no_longer_configured_are_dropped(self):
        queue = Matchmaker(rules(), counter())
        queue.join("duel", "duel", ["a"], [1500], 0.0)
        queue.join("duel", "2v2", ["b"], [1500], 0.0)
        fewer = {"duel": QueueRules({"duel": (1, 1)}, 100.0, 10.0, 500.0, 60.0)}
        other = Matchmaker(fewer, counter())
        other.restore(queue.snapshot())
        self.assertIsNotNone(other.entry_of("a"))
        self.assertIsNone(other.entry_of("b"))
        gone = Matchmaker({}, counter())
        gone.restore(queue.snapshot())
        self.assertEqual(gone.queued(), 0)


# -- properties ---------------------------------------------------------------------------

#: Joins: (mode, party size, rating, seconds after the previous join).
joins = st.lists(
    st.tuples(
        st.sampled_from(sorted(MODES)),
        st.integers(1, 3),
        st.integers(0, 3000),
        st.floats(0, 20, allow_nan=False),
    ),
    max_size=40,
)


def play(queue: Matchmaker, plan, step: float = 2.0) -> tuple[list, dict]:
    """
    Join C{plan}'s entries, with a pass every C{step} seconds: the matches
    formed, and every entry that joined, by id.
    """
    now, names, formed, joined = 0.0, itertools.count(), [], {}
    last_pass = 0.0
    for mode, size, rating, after in plan:
        now += after
        while last_pass + step <= now:
            last_pass += step
            formed.extend(queue.match(last_pass))
        players = [f"p{next(names)}" for _ in range(size)]
        try:
            entry = queue.join("duel", mode, players, [rating] * size, now)
        except QueueError as e:
            assert e.code == "party_size", e
        else:
            joined[entry.id] = entry
    formed.extend(queue.match(now + step))
    return formed, joined


#: A pass done the plain way (every anchor scans every later entry), from
#: the benchmark that compares the two.
scanned_pass = load_bench("ladder_queue").scanned_pass


class PropertyTests(unittest.TestCase):
    @BOUNDED
    @given(joins)
    def test_nobody_matched_twice(self, plan):
        queue = Matchmaker(rules(), counter())
        formed, _ = play(queue, plan)
        players = [p for m in formed for p in m.players]
        self.assertEqual(len(players), len(set(players)))
        for match in formed:
            self.assertEqual(
                tuple(len(t) for t in match.teams), MODES[match.mode], "teams of the mode's sizes"
            )
            self.assertIsNone(queue.entry_of(match.players[0]))

    @BOUNDED
    @given(joins)
    def test_every_match_within_the_gap_of_its_longest_waiter(self, plan):
        queue = Matchmaker(rules(), counter())
        formed, joined = play(queue, plan)
        r = queue.rules["duel"]
        for match in formed:
            members = [joined[p] for p in match.players if p in joined]
            self.assertEqual(sum(len(e.players) for e in members), len(match.players))
            longest = min(members, key=lambda e: (e.joined, e.id))
            gap = r.accepted_gap(match.formed - longest.joined)
            self.assertEqual(gap, match.gap)
            for entry in members:
                self.assertLessEqual(abs(entry.rating - longest.rating), gap)

    @BOUNDED
    @given(
        st.lists(
            st.tuples(st.integers(0, 3000), st.floats(0, 20, allow_nan=False)),
            max_size=40,
        ),
        st.sampled_from(["duel", "2v2", "ffa"]),
    )
    def test_nobody_starves_while_someone_close_enough_waits(self, plan, mode):
        """
        Solo players: after each pass, no waiting player has enough others
        within its gap (and a player who waited long enough to accept the
        widest gap has fewer than a match's worth of players that close).
        """
        queue = Matchmaker(rules(gap=50, growth=25, gap_max=400), counter())
        needed = sum(MODES[mode])
        now, names = 0.0, itertools.count()
        for rating, after in plan:
            now += after
            queue.join("duel", mode, [f"p{next(names)}"], [rating], now)
            queue.match(now)
            waiting = sorted(
                queue.queues.get(("duel", mode), {}).values(), key=lambda e: (e.joined, e.id)
            )
            r = queue.rules["duel"]
            for i, entry in enumerate(waiting):
                gap = r.accepted_gap(now - entry.joined)
                close = [e for e in waiting[i + 1 :] if abs(e.rating - entry.rating) <= gap]
                self.assertLess(len(close), needed - 1, f"{entry} starves")

    @BOUNDED
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(MODES)),
                st.integers(1, 3),
                st.sampled_from([1000, 1040, 1050, 1100, 1200, 1500, 1960, 2000]),
                st.floats(0, 5, allow_nan=False),
            ),
            max_size=60,
        ),
        st.floats(0, 60, allow_nan=False),
    )
    def test_a_pass_is_the_plain_scan(self, plan, later):
        """
        A pass forms the matches a scan of every entry would (ratings
        often equal, and at equal distances either side).
        """
        queue = Matchmaker(rules(), counter())
        now, names = 0.0, itertools.count()
        for mode, size, rating, after in plan:
            now += after
            try:
                queue.join(
                    "duel", mode, [f"p{next(names)}" for _ in range(size)], [rating] * size, now
                )
            except QueueError:
                pass
        expected = scanned_pass(queue, now + later)
        formed = queue.match(now + later)
        self.assertEqual([(m.mode, m.teams, m.gap) for m in formed], expected)

    @BOUNDED
    @given(joins)
    def test_deterministic(self, plan):
        first, _ = play(Matchmaker(rules(), counter()), plan)
        second, _ = play(Matchmaker(rules(), counter()), plan)
        self.assertEqual(first, second)


class CancelTests(unittest.TestCase):
    """A match whose room never opened, cancelled: its entries queued again as they were."""

    def setUp(self):
        self.queue = Matchmaker(rules(), counter())

    def formed(self, mode: str, parties: list, now: float = 0.0):
        for players in parties:
            self.queue.join("duel", mode, players, [1500] * len(players), now)
        [match] = self.queue.match(now + 1.0)
        return match

    def test_entries_go_back_as_they_were_queued(self):
        match = self.formed("2v2", [["a", "b"], ["c"], ["d"]], now=5.0)
        self.assertEqual(sorted(e.id for e in match.entries), ["a", "c", "d"])
        cancelled, back = self.queue.cancel(match.id)
        self.assertEqual(cancelled, match)
        self.assertEqual(
            sorted(back, key=lambda e: e.id), sorted(match.entries, key=lambda e: e.id)
        )
        # The party is one entry again, and everybody keeps his waiting time.
        self.assertEqual(self.queue.entry_of("b")[2], Entry("a", ("a", "b"), 1500.0, 5.0))
        self.assertEqual(self.queue.entry_of("c")[2].joined, 5.0)
        self.assertEqual((self.queue.matches, self.queue.queued()), ({}, 4))
        # Forgotten: a result for it is refused, and it cannot be cancelled twice.
        self.assertIsNone(self.queue.known(match.id))
        self.assertIsNone(self.queue.cancel(match.id))
        self.assertIsNone(self.queue.finish(match.id, 10.0))
        # They match again, into one new match.
        [again] = self.queue.match(20.0)
        self.assertNotEqual(again.id, match.id)
        self.assertEqual(sorted(again.players), ["a", "b", "c", "d"])
        self.assertEqual(self.queue.match_of("a"), again)

    def test_who_left_is_not_queued_again_nor_his_party(self):
        match = self.formed("2v2", [["a", "b"], ["c"], ["d"]])
        _, back = self.queue.cancel(match.id, gone={"b", "d"})
        self.assertEqual([e.id for e in back], ["c"])
        for freed in ("a", "b", "d"):
            self.assertIsNone(self.queue.entry_of(freed))
            self.assertIsNone(self.queue.match_of(freed))
        self.assertEqual(self.queue.queued(), 1)

    def test_a_mode_no_longer_configured_queues_nobody(self):
        match = self.formed("duel", [["a"], ["b"]])
        queue = Matchmaker({"duel": QueueRules({"2v2": (2, 2)}, 1, 1, 1, 60)}, counter())
        queue.restore(self.queue.snapshot())
        self.assertEqual(queue.cancel(match.id), (match, []))
        self.assertEqual((queue.queues, queue.queued()), ({}, 0))

    def test_not_open(self):
        match = self.formed("duel", [["a"], ["b"]])
        self.queue.finish(match.id, 2.0)
        self.assertIsNone(self.queue.cancel(match.id))
        self.assertIsNone(self.queue.cancel("nothing"))

    def test_entries_survive_a_snapshot(self):
        match = self.formed("2v2", [["a", "b"], ["c"], ["d"]])
        other = Matchmaker(rules(), counter())
        other.restore(self.queue.snapshot())
        self.assertEqual(other.matches[match.id], match)
        _, back = other.cancel(match.id)
        self.assertEqual(len(back), 3)

    def test_a_match_saved_without_its_entries_frees_its_players(self):
        # The state of an earlier version: nothing to queue again.
        match = self.formed("duel", [["a"], ["b"]])
        state = self.queue.snapshot()
        for saved in state["matches"]:
            del saved["entries"]
        other = Matchmaker(rules(), counter())
        other.restore(state)
        self.assertEqual(other.cancel(match.id)[1], [])
        self.assertIsNone(other.match_of("a"))


#: What happens to the queue, step by step: a join (mode, party size,
#: rating), a pass, a match cancelled or finished (the n-th open one, and
#: for a cancel whether its first player's session ended).
steps = st.lists(
    st.one_of(
        st.tuples(st.just("join"), st.sampled_from(sorted(MODES)), st.integers(1, 3)),
        st.tuples(st.just("pass"), st.floats(0, 30, allow_nan=False)),
        st.tuples(st.just("cancel"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("finish"), st.integers(0, 5)),
        st.tuples(st.just("leave"), st.integers(0, 60)),
    ),
    max_size=80,
)


class CancelPropertyTests(unittest.TestCase):
    def assert_one_place_each(self, queue: Matchmaker, players) -> None:
        """
        Every player is in one entry or one open match at most, and the
        queue says so of each of C{players}.
        """
        places: dict[str, str] = {}
        for (ladder, mode), entries in queue.queues.items():
            for entry in entries.values():
                for player in entry.players:
                    self.assertNotIn(player, places, f"{player} twice")
                    places[player] = entry.id
                    self.assertEqual(queue.entry_of(player), (ladder, mode, entry))
        for match in queue.matches.values():
            for player in match.players:
                self.assertNotIn(player, places, f"{player} queued and in {match.id}")
                places[player] = match.id
        for player in players:
            match, entry = queue.match_of(player), queue.entry_of(player)
            self.assertFalse(match and entry, f"{player} queued and in a match")
            where = match.id if match else entry[2].id if entry else None
            self.assertEqual(where, places.get(player))
        self.assertEqual(
            queue.queued() + sum(len(m.players) for m in queue.matches.values()), len(places)
        )

    @BOUNDED
    @given(steps)
    def test_a_player_is_never_in_two_matches(self, plan):
        queue = Matchmaker(rules(), counter())
        now, names, created = 0.0, itertools.count(), []
        for step in plan:
            if step[0] == "join":
                _, mode, size = step
                players = [f"p{next(names)}" for _ in range(size)]
                created.extend(players)
                try:
                    queue.join("duel", mode, players, [1500] * size, now)
                except QueueError:
                    pass
            elif step[0] == "pass":
                now += step[1]
                queue.match(now)
            elif step[0] == "leave":
                queue.leave(f"p{step[1]}")
            elif queue.matches:
                match = sorted(queue.matches.values(), key=lambda m: m.id)[
                    step[1] % len(queue.matches)
                ]
                if step[0] == "finish":
                    queue.finish(match.id, now)
                else:
                    gone = match.players[:1] if step[2] else ()
                    _, back = queue.cancel(match.id, gone)
                    self.assertEqual(
                        sorted(e.id for e in back),
                        sorted(e.id for e in match.entries if not set(gone) & set(e.players)),
                    )
            self.assert_one_place_each(queue, created)
