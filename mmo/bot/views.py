"""
What each bot sees, checked: L{ViewTracker} keeps a bot's view from its
C{world.update} pushes and counts duplicated and lost entities;
L{view_misses} finds bots close to each other that do not see each other.
"""

from __future__ import annotations

import math

import msgpack


class ViewTracker:
    """
    One bot's view: the ids of the entities its client has, and its own
    entity's position as the server confirms it.

    A push's C{update} list may come as its msgpack bytes (L{BotClient});
    those holding the bot's own id are kept, undecoded, until the position
    is read (L{position}, L{x}, L{y}): the newest with a position wins.

    @ivar duplicated: Entities that entered while already in view, or
        were entered twice by one push.
    @ivar lost: The bot's own entity leaving its view, or a leave for an
        id that is not in view.
    @ivar resets: Pushes that started the view over (C{reset}: a zone
        restored after its process ended does not know what was shown).
    """

    __slots__ = (
        "_own",
        "_own_packed",
        "_x",
        "_y",
        "_unread",
        "view",
        "duplicated",
        "lost",
        "resets",
        "pushes",
        "examples",
        "clock",
    )

    #: Anomalies kept per bot, to show in the report.
    EXAMPLES = 3
    #: Undecoded updates kept at most: past it, the newest are read at once.
    UNREAD = 16

    def __init__(self, own: str | None = None, x: float | None = None, y: float | None = None):
        self.own = own
        self.view: set[str] = set()
        self._x, self._y = x, y
        self._unread: list[bytes] = []
        self.duplicated = 0
        self.lost = 0
        self.resets = 0
        self.pushes = 0
        self.examples: list[dict] = []
        self.clock = None

    @property
    def own(self) -> str | None:
        return self._own

    @own.setter
    def own(self, entity: str | None) -> None:
        self._own = entity
        self._own_packed = msgpack.packb(entity) if isinstance(entity, str) else None
        self._unread = []

    def place(self, x: float | None, y: float | None) -> None:
        """The server says where the bot's entity is (newer than any update seen)."""
        self._x, self._y = x, y
        self._unread.clear()

    @property
    def x(self) -> float | None:
        if self._unread:
            self._read()
        return self._x

    @property
    def y(self) -> float | None:
        if self._unread:
            self._read()
        return self._y

    def feed(self, push: dict, update: bytes | None = None) -> None:
        """
        Take one C{world.update} push; C{update}: its C{update} list's
        msgpack bytes, when it is not in C{push}.
        """
        self.pushes += 1
        view = self.view
        own = self._own
        if push.get("reset"):
            # The zone starts the view over: what it enters is all there is.
            self.resets += 1
            view.clear()
        for entered in push.get("enter", ()):
            entity = entered["id"]
            if entity in view:
                self.duplicated += 1
                self.note("duplicated", entity, push)
            else:
                view.add(entity)
            if entity == own:
                self.place(entered["x"], entered["y"])
        if update is not None:
            # A cheap test in C: most updates hold the bot's own move.
            if self._own_packed is not None and self._own_packed in update:
                unread = self._unread
                unread.append(update)
                if len(unread) >= self.UNREAD:
                    self._read()
        else:
            for change in push.get("update", ()):
                if change["id"] == own and "x" in change:
                    self.place(change["x"], change["y"])
        for entity in push.get("leave", ()):
            if entity == own:
                self.lost += 1
                self.note("lost own", entity, push)
            if entity in view:
                view.discard(entity)
            else:
                self.lost += 1
                self.note("left unseen", entity, push)

    def _read(self) -> None:
        """The own position from the newest kept update that has one."""
        unread, self._unread = self._unread, []
        own = self._own
        for update in reversed(unread):
            for change in msgpack.unpackb(update, raw=False):
                if change.get("id") == own and "x" in change:
                    self._x, self._y = change["x"], change["y"]
                    return

    def note(self, what: str, entity: str, push: dict) -> None:
        """Keep the first few anomalies: what, which id, and the push's seq and tick."""
        if len(self.examples) < self.EXAMPLES:
            example = {
                "what": what,
                "id": entity,
                "own": entity == self._own,
                "seq": push.get("seq"),
                "tick": push.get("tick"),
            }
            if self.clock is not None:
                example["at"] = round(self.clock(), 3)
            self.examples.append(example)

    @property
    def position(self) -> tuple[float, float] | None:
        x = self.x
        return None if x is None else (x, self._y)


def view_misses(bots, radius: float) -> tuple[int, int]:
    """
    C{bots}: C{(entity_id, x, y, view)} each (C{view} a set of ids).  Finds
    the pairs closer than C{radius} to each other, with a grid of cells
    C{radius} wide (each bot looks at the 3 x 3 cells around its own), and
    returns C{(pairs, misses)}: how many close pairs there are, and how
    many of them do not both have each other in view.
    """
    if radius <= 0:
        return 0, 0
    grid: dict[tuple[int, int], list[int]] = {}
    cells = []
    for index, (_, x, y, _) in enumerate(bots):
        cell = (math.floor(x / radius), math.floor(y / radius))
        cells.append(cell)
        grid.setdefault(cell, []).append(index)
    limit = radius * radius
    pairs = misses = 0
    for index, (entity, x, y, view) in enumerate(bots):
        cx, cy = cells[index]
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for other in grid.get((cx + dx, cy + dy), ()):
                    if other <= index:
                        continue
                    o_entity, ox, oy, o_view = bots[other]
                    if (ox - x) ** 2 + (oy - y) ** 2 >= limit:
                        continue
                    pairs += 1
                    if o_entity not in view or entity not in o_view:
                        misses += 1
    return pairs, misses
