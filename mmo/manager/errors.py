"""
The recent error lines of a manager's processes, for the admin console: the
lines they log at level C{error} or C{critical}, and whatever they write on
standard error (a crash before logging started, a traceback), the last
L{RecentErrors.size} of them, each cut to L{LINE_MAX} characters.
"""

from __future__ import annotations

import json
from collections import deque

#: The longest line kept, characters (a traceback is one escaped line).
LINE_MAX = 2000

#: The levels of a log line that make it an error.
ERROR_LEVELS = frozenset({"error", "critical"})

#: Error lines C{errors} answers by default.
ERRORS_SHOWN = 100


def is_error(text: str) -> bool:
    """
    Whether C{text}, one line of an mmo process's log (L{mmo.logs}: text,
    C{TIME [SERVICE] LEVEL ...}, or a JSON object with a C{level}), is at
    an error level.
    """
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except ValueError:
            return False
        return isinstance(record, dict) and record.get("level") in ERROR_LEVELS
    fields = text.split(" ", 3)
    return len(fields) > 2 and fields[2] in ERROR_LEVELS


class RecentErrors:
    """
    The last C{size} error lines, oldest first.

    @ivar lines: Each as C{{"time", "process", "text"}}.
    """

    def __init__(self, clock, size: int = 200):
        self.clock = clock
        self.size = size
        self.lines: deque[dict] = deque(maxlen=size)

    def line(self, process: str, fd: int, text: str) -> None:
        """One line C{process} wrote on C{fd}: kept if it is an error."""
        if fd == 2 or is_error(text):
            self.lines.append(
                {"time": self.clock.seconds(), "process": process, "text": text[:LINE_MAX]}
            )

    def recent(self, limit: int) -> list[dict]:
        """The last C{limit} lines, newest first."""
        return list(reversed(self.lines))[:limit]
