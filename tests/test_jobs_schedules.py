"""
Tests for L{mmo.schedules}: cron expressions checked against a
minute-by-minute enumeration of what they mean, intervals, one-shot times
and the schedule text the config takes.
"""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from mmo.schedules import (
    Cron,
    Interval,
    OneShot,
    ScheduleError,
    iso_time,
    parse_schedule,
    parse_time,
)

UTC = datetime.UTC

#: Minutes the brute force walks: 40 days.
WINDOW_MINUTES = 40 * 24 * 60


def brute_matches(minute: datetime.datetime, fields: list[set[int]], stars: tuple[bool, bool]):
    """Whether cron fires at C{minute}, straight from the meaning of the fields."""
    minutes, hours, days, months, weekdays = fields
    cron_weekday = (minute.weekday() + 1) % 7  # Sunday = 0
    day = minute.day in days
    weekday = cron_weekday in weekdays or (cron_weekday == 0 and 7 in weekdays)
    if stars[0] or stars[1]:
        day_ok = day and weekday
    else:
        day_ok = day or weekday
    return minute.minute in minutes and minute.hour in hours and minute.month in months and day_ok


def brute_next(start: float, fields, stars) -> float | None:
    """The first matching minute after C{start}, within L{WINDOW_MINUTES}."""
    minute = datetime.datetime.fromtimestamp(start, UTC).replace(second=0, microsecond=0)
    for _ in range(WINDOW_MINUTES):
        minute += datetime.timedelta(minutes=1)
        if brute_matches(minute, fields, stars):
            return minute.timestamp()
    return None


def field_text(draw, low: int, high: int) -> tuple[str, set[int]]:
    """A random cron field and the values it means."""
    kind = draw(st.sampled_from(["star", "number", "range", "step", "list", "star-step"]))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "star-step":
        step = draw(st.integers(1, max(1, (high - low) // 2)))
        return f"*/{step}", set(range(low, high + 1, step))
    if kind == "number":
        n = draw(st.integers(low, high))
        return str(n), {n}
    a = draw(st.integers(low, high))
    b = draw(st.integers(a, high))
    if kind == "range":
        return f"{a}-{b}", set(range(a, b + 1))
    if kind == "step":
        step = draw(st.integers(1, 5))
        return f"{a}-{b}/{step}", set(range(a, b + 1, step))
    values = sorted(set(draw(st.lists(st.integers(low, high), min_size=1, max_size=4))))
    return ",".join(map(str, values)), set(values)


@st.composite
def expressions(draw):
    minute = field_text(draw, 0, 59)
    hour = field_text(draw, 0, 23)
    day = field_text(draw, 1, 31)
    month = field_text(draw, 1, 12)
    weekday = field_text(draw, 0, 7)
    parts = [minute, hour, day, month, weekday]
    text = " ".join(p[0] for p in parts)
    stars = (day[0].startswith("*"), weekday[0].startswith("*"))
    return text, [p[1] for p in parts], stars


class CronTests(unittest.TestCase):
    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(
        expressions(),
        st.floats(min_value=1.5e9, max_value=2.5e9, allow_nan=False),
    )
    def test_against_brute_force(self, expression, start):
        """next_after is the first minute after the time that the fields name."""
        text, fields, stars = expression
        try:
            cron = Cron(text)
        except ScheduleError:
            # Only for expressions naming no date: check that none exists.
            months = fields[3]
            self.assertTrue(stars[1])
            self.assertFalse(
                any(d <= 29 if m == 2 else d <= 30 + (m in (1, 3, 5, 7, 8, 10, 12))
                    for m in months for d in fields[2])
            )  # fmt: skip
            return
        expected = brute_next(start, fields, stars)
        found = cron.next_after(start)
        if expected is None:
            self.assertTrue(found is None or found > start + WINDOW_MINUTES * 60)
        else:
            self.assertEqual(found, expected, text)

    def test_examples(self):
        start = parse_time("2026-12-07T00:05:30Z")
        cases = {
            "*/15 * * * *": "2026-12-07T00:15:00.000Z",
            "0 9 * * mon-fri": "2026-12-07T09:00:00.000Z",  # a Monday
            "30 4 1 jan *": "2027-01-01T04:30:00.000Z",
            "0 0 29 2 *": "2028-02-29T00:00:00.000Z",
            "0 12 13 * 5": "2026-12-11T12:00:00.000Z",  # Friday, or the 13th
            "@daily": "2026-12-08T00:00:00.000Z",
            "5 0 * * *": "2026-12-08T00:05:00.000Z",  # not the minute it is in
        }
        for text, expected in cases.items():
            self.assertEqual(iso_time(Cron(text).next_after(start)), expected, text)

    def test_bad(self):
        for text in ["* * * *", "60 * * * *", "* 24 * * *", "5-1 * * * *", "*/0 * * * *",
                     "x * * * *", "0 0 31 2 *", "0 0 30 feb *"]:  # fmt: skip
            with self.assertRaises(ScheduleError, msg=text):
                Cron(text)


class IntervalTests(unittest.TestCase):
    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(
        st.sampled_from([0.5, 1, 2.5, 30, 90, 3600, 86400]),
        st.floats(min_value=0, max_value=2e9, allow_nan=False),
    )
    def test_multiples(self, seconds, start):
        """The next multiple of the interval since the epoch, strictly after."""
        interval = Interval(seconds)
        found = interval.next_after(start)
        self.assertGreater(found, start)
        self.assertLessEqual(found - start, seconds + 0.001)
        self.assertAlmostEqual((found * 1000) % (seconds * 1000), 0, places=3)
        self.assertEqual(interval.next_after(found), found + seconds)

    def test_times(self):
        """times(): the firings in (after, until], at most limit of them."""
        interval = Interval(10)
        self.assertEqual(interval.times(5, 40, 100), [10, 20, 30, 40])
        self.assertEqual(interval.times(10, 40, 2), [20, 30])
        self.assertEqual(interval.times(40, 45, 10), [])


class ParseTests(unittest.TestCase):
    def test_forms(self):
        self.assertEqual(parse_schedule(30), Interval(30))
        self.assertEqual(parse_schedule("every 1h30m").seconds, 5400)
        self.assertEqual(parse_schedule("every 500ms").seconds, 0.5)
        self.assertIsInstance(parse_schedule("0 * * * *"), Cron)
        self.assertIsInstance(parse_schedule("@hourly"), Cron)
        shot = parse_schedule("at 2027-01-01T00:00:00Z")
        self.assertIsInstance(shot, OneShot)
        self.assertEqual(shot.next_after(0), parse_time("2027-01-01T00:00:00+00:00"))
        self.assertIsNone(shot.next_after(shot.at))
        self.assertEqual(parse_schedule("2027-01-01T00:00:00").at, shot.at)

    def test_bad(self):
        for value in ["every", "every 3 parsecs", "soon", True, 0, [1], "at tomorrow"]:
            with self.assertRaises(ScheduleError, msg=repr(value)):
                parse_schedule(value)
