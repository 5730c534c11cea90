"""
When a job runs: a L{Cron} expression, an L{Interval} or a L{OneShot} time,
read from text by L{parse_schedule}.

Every schedule answers one question, L{Schedule.next_after}: the first time
it fires strictly after a given time (Unix seconds, UTC), or C{None} if it
never fires again.  They are pure functions of their text and that time, so
every process of a deployment computes the same times, and a time is a
name for a run (its run id) that all of them agree on.
"""

from __future__ import annotations

import calendar
import datetime
import math
import re

#: How far ahead a cron expression is searched before it is said never to
#: fire again: enough for a 29 February on a given weekday.
CRON_HORIZON_DAYS = 366 * 30

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")

#: The shorthand expressions cron knows.
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: Units of an interval ("every 90s", "every 1h30m").
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^every\s+((?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+)$")
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")


class ScheduleError(ValueError):
    """A schedule's text cannot be read; the message says why."""


class Schedule:
    """
    When a job fires.

    @ivar text: The schedule as it was written (shown by C{mmo-admin jobs}).
    """

    text: str

    def next_after(self, when: float) -> float | None:
        """The first time after C{when} (not C{when} itself) it fires, or C{None}."""
        raise NotImplementedError()

    def times(self, after: float, until: float, limit: int):
        """
        The times it fires in C{(after, until]}, in order, at most C{limit}
        of them (the last ones are cut).
        """
        found = []
        when = self.next_after(after)
        while when is not None and when <= until and len(found) < limit:
            found.append(when)
            when = self.next_after(when)
        return found

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.text == self.text

    def __hash__(self) -> int:
        return hash((type(self), self.text))


class Interval(Schedule):
    """
    Every C{seconds}, at the multiples of C{seconds} since the Unix epoch:
    the same times in every process, whenever each started.
    """

    def __init__(self, seconds: float, text: str | None = None):
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)) or seconds < 0.01:
            raise ScheduleError(f"an interval must be at least 0.01 s, got {seconds!r}")
        self.seconds = float(seconds)
        # Times are kept to the millisecond: the step in whole milliseconds.
        self._step_ms = max(1, round(self.seconds * 1000))
        self.text = text if text is not None else f"every {self.seconds:g}s"

    def next_after(self, when: float) -> float | None:
        ms = math.floor(round(when * 1000, 3))
        return (ms // self._step_ms + 1) * self._step_ms / 1000


class OneShot(Schedule):
    """Once, at C{at} (Unix seconds)."""

    def __init__(self, at: float, text: str | None = None):
        self.at = float(at)
        self.text = text if text is not None else iso_time(self.at)

    def next_after(self, when: float) -> float | None:
        return self.at if self.at > when else None


class Cron(Schedule):
    """
    A five-field cron expression, in UTC: minute (0-59), hour (0-23), day
    of the month (1-31), month (1-12 or jan-dec), day of the week (0-7,
    0 and 7 being Sunday, or sun-sat).  Each field is C{*}, a number, a
    range C{a-b}, any of these with a step (C{*/15}, C{10-50/20}), or a
    list of them separated by commas.  As in Vixie cron, when both day
    fields are restricted (neither starts with C{*}) a day matches if
    either matches.  The macros
    C{@hourly}, C{@daily}, C{@weekly}, C{@monthly} and C{@yearly} are
    taken too.

    @raise ScheduleError: The expression cannot be read, or names no
        date at all (C{0 0 31 2 *}).
    """

    def __init__(self, text: str):
        self.text = text
        expression = _MACROS.get(text.strip().lower(), text)
        parts = expression.split()
        if len(parts) != 5:
            raise ScheduleError(
                f"a cron expression has 5 fields (minute hour day month weekday), got {len(parts)}"
            )
        self.minutes = _field(parts[0], 0, 59, "minute")
        self.hours = _field(parts[1], 0, 23, "hour")
        self.days = _field(parts[2], 1, 31, "day of the month")
        self.months = _field(parts[3], 1, 12, "month", _MONTHS)
        weekdays = _field(parts[4], 0, 7, "day of the week", _DAYS)
        # Python counts Monday as 0: cron's Sunday (0 or 7) is 6.
        self.weekdays = frozenset((d - 1) % 7 for d in weekdays)
        # As in Vixie cron, a day field that starts with "*" (even "*/2")
        # leaves the choice to the other one.
        self._any_day = parts[2].startswith("*")
        self._any_weekday = parts[4].startswith("*")
        self._minute_list = sorted(self.minutes)
        self._hour_list = sorted(self.hours)
        if self._any_weekday and not any(
            day <= _longest(month) for month in self.months for day in self.days
        ):
            raise ScheduleError(f"{text!r} names no date: no such day in those months")

    def day_matches(self, date: datetime.date) -> bool:
        """Whether the expression fires on C{date} (at some time of it)."""
        if date.month not in self.months:
            return False
        day = date.day in self.days
        weekday = date.weekday() in self.weekdays
        if self._any_day or self._any_weekday:
            return day and weekday
        return day or weekday

    def next_after(self, when: float) -> float | None:
        start = datetime.datetime.fromtimestamp((math.floor(when / 60) + 1) * 60, datetime.UTC)
        date = start.date()
        for _ in range(CRON_HORIZON_DAYS):
            if date.month not in self.months:
                # On to the first of the next month.
                year, month = divmod(date.month, 12)
                date = datetime.date(date.year + year, month + 1, 1)
                continue
            if self.day_matches(date):
                first = start if date == start.date() else None
                found = self._time_of_day(first)
                if found is not None:
                    hour, minute = found
                    moment = datetime.datetime(
                        date.year, date.month, date.day, hour, minute, tzinfo=datetime.UTC
                    )
                    return moment.timestamp()
            date += datetime.timedelta(days=1)
        return None

    def _time_of_day(self, start: datetime.datetime | None) -> tuple[int, int] | None:
        """The first (hour, minute) that fires, at or after C{start}'s if given."""
        for hour in self._hour_list:
            if start is not None and hour < start.hour:
                continue
            for minute in self._minute_list:
                if start is not None and hour == start.hour and minute < start.minute:
                    continue
                return hour, minute
        return None


def _longest(month: int) -> int:
    """The most days C{month} has (29 for February)."""
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def _value(text: str, low: int, high: int, what: str, names) -> int:
    lowered = text.lower()
    if names and lowered in names:
        return names.index(lowered) + (1 if names is _MONTHS else 0)
    if not text.isdigit():
        raise ScheduleError(f"{what}: {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise ScheduleError(f"{what}: {value} is not within {low}-{high}")
    return value


def _field(text: str, low: int, high: int, what: str, names=()) -> frozenset[int]:
    """The values of one cron field."""
    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"{what}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _value(a, low, high, what, names), _value(b, low, high, what, names)
            if first > last:
                raise ScheduleError(f"{what}: range {base!r} goes backwards")
        else:
            first = _value(base, low, high, what, names)
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def iso_time(when: float) -> str:
    """C{when} as an ISO 8601 UTC time, to the millisecond: C{2026-12-07T00:05:00.000Z}."""
    moment = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """
    An ISO 8601 time as Unix seconds; without a zone it is UTC.

    @raise ScheduleError: Not an ISO time.
    """
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(f"{text!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


def parse_schedule(value) -> Schedule:
    """
    A schedule from its config value: a number of seconds or C{"every
    30s"} (units ms, s, m, h, d, combined as in C{"every 1h30m"}) for an
    L{Interval}; C{"at 2027-01-01T00:00:00Z"} (or an ISO time alone) for a
    L{OneShot}; five fields or a macro for a L{Cron}.

    @raise ScheduleError: None of these.
    """
    if isinstance(value, bool):
        raise ScheduleError("must be a number of seconds or a string")
    if isinstance(value, (int, float)):
        return Interval(value)
    if not isinstance(value, str):
        raise ScheduleError("must be a number of seconds or a string")
    text = value.strip()
    interval = _INTERVAL.match(text.lower())
    if interval:
        seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(interval.group(1)))
        return Interval(seconds, text)
    if text.lower().startswith("at "):
        return OneShot(parse_time(text[3:]), text)
    if text.startswith("@") or len(text.split()) == 5:
        return Cron(text)
    try:
        return OneShot(parse_time(text), text)
    except ScheduleError:
        raise ScheduleError(
            f"{value!r} is not a schedule: give seconds, 'every 30s', a cron expression "
            "(5 fields) or an ISO time"
        ) from None
