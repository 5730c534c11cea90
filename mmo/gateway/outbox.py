"""
A session's outbox: the stems of its last pushes, kept for a resume.
"""

from __future__ import annotations

from itertools import islice

#: Dropped slots reclaimed at once: past this many, and half the list.
_RECLAIM = 16


class Outbox:
    """
    The stems (L{mmo.wire.codec.push_stem}) of a session's last pushes,
    oldest first, bounded in count and in bytes by whoever keeps them.

    A list with the dropped stems let go at once and their slots reclaimed
    in batches: a deque takes a 64-slot block (most of a kilobyte) even for
    the one push an idle session had, and a list's C{pop(0)} moves every
    slot on each push of a full outbox.

    @ivar size: The bytes of the stems kept (as many as the bodies sent).
    """

    __slots__ = ("_stems", "_first", "size")

    def __init__(self):
        self._stems: list[bytes | None] = []
        #: Where the oldest kept stem is in C{_stems}; the slots before it are dropped.
        self._first = 0
        self.size = 0

    def __len__(self) -> int:
        return len(self._stems) - self._first

    def __iter__(self):
        return islice(self._stems, self._first, None)

    def keep(self, stem: bytes, most: int, most_bytes: int | None) -> None:
        """
        Keep C{stem} as the newest; drop the oldest while more than C{most}
        are kept or, but for the newest, more than C{most_bytes} bytes.
        """
        stems = self._stems
        stems.append(stem)
        self.size += len(stem)
        if len(stems) - self._first > most or (most_bytes is not None and self.size > most_bytes):
            self._drop(most, most_bytes)

    def _drop(self, most: int, most_bytes: int | None) -> None:
        stems, first = self._stems, self._first
        while len(stems) - first > most or (
            most_bytes is not None and self.size > most_bytes and len(stems) - first > 1
        ):
            self.size -= len(stems[first])
            stems[first] = None
            first += 1
        if first > _RECLAIM and first * 2 > len(stems):
            del stems[:first]
            first = 0
        self._first = first

    def newest(self, count: int) -> list[bytes]:
        """The newest C{count} stems kept, oldest first."""
        if count <= 0:
            return []
        return self._stems[max(len(self._stems) - count, self._first) :]
