"""
A strict reader of the replies a Redis subscriber connection receives
(RESP2): pub/sub pushes and the answers to AUTH, SUBSCRIBE, UNSUBSCRIBE and
PING, that is simple strings, errors, integers, bulk strings and flat
arrays of those.  Anything else, or anything past its bounds, is a
L{RespError}: the connection that sent it is not to be trusted further.

txredisapi's generic reader parses a line at a time and hands each bulk
string's tail to a later reactor turn; a zone receives its neighbours'
ghosts many times a tick, so this one parses a whole chunk in one go.
"""

from __future__ import annotations

from txredisapi import ResponseError


class RespError(Exception):
    """The bytes are not a reply a subscriber connection can receive."""


class _Incomplete(Exception):
    """The reply goes on past the bytes received; C{need} of them at least."""

    def __init__(self, need: int):
        self.need = need


_CRLF = b"\r\n"
_BULK = ord("$")
_ARRAY = ord("*")
_INTEGER = ord(":")
_STATUS = ord("+")
_ERROR = ord("-")


class RespReader:
    """
    Replies out of the bytes of one connection, in order (L{feed}).

    @ivar max_bulk: The longest bulk string taken (a message's bytes).
    @ivar max_items: The most items in an array.
    @ivar max_line: The longest line (a header, a status or an error).
    """

    def __init__(
        self, max_bulk: int = 64 * 1024 * 1024, max_items: int = 16, max_line: int = 16384
    ):
        self.max_bulk = max_bulk
        self.max_items = max_items
        self.max_line = max_line
        #: The bytes of the reply under way, in the chunks they came in.
        self._chunks: list[bytes] = []
        self._pending = 0
        #: How many bytes the reply under way needs before it is parsed again.
        self._need = 0

    def feed(self, data: bytes) -> list:
        """
        The replies completed by C{data}: statuses as C{str}, errors as
        txredisapi's C{ResponseError} (as txredisapi gives them), integers,
        bulk strings as C{bytes} (C{None} for a null one), arrays as lists.

        @raise RespError: The bytes are not such replies; the reader is
            not to be fed again.
        """
        if self._chunks:
            self._chunks.append(data)
            self._pending += len(data)
            if self._pending < self._need:
                return []
            data = b"".join(self._chunks)
            self._chunks = []
        replies = []
        append = replies.append
        reply = self._reply
        pos = 0
        end = len(data)
        try:
            while pos < end:
                value, pos = reply(data, pos)
                append(value)
        except _Incomplete as incomplete:
            self._chunks = [data[pos:]] if pos else [data]
            self._pending = end - pos
            self._need = incomplete.need - pos
        return replies

    def _reply(self, data: bytes, pos: int):
        if data[pos] != _ARRAY:
            return self._item(data, pos)
        eol = self._eol(data, pos)
        count = _number(data, pos + 1, eol)
        if count < 0 or count > self.max_items:
            if count == -1:
                return None, eol + 2
            raise RespError(f"an array of {count} items")
        items = []
        pos = eol + 2
        item = self._item
        for _ in range(count):
            value, pos = item(data, pos)
            items.append(value)
        return items, pos

    def _item(self, data: bytes, pos: int):
        if pos >= len(data):
            raise _Incomplete(pos + 1)
        eol = self._eol(data, pos)
        kind = data[pos]
        if kind == _BULK:
            size = _number(data, pos + 1, eol)
            start = eol + 2
            stop = start + size
            if size < 0 or size > self.max_bulk:
                if size == -1:
                    return None, start
                raise RespError(f"a bulk string of {size} bytes")
            if stop + 2 > len(data):
                raise _Incomplete(stop + 2)
            if data[stop : stop + 2] != _CRLF:
                raise RespError("a bulk string longer than its length")
            return data[start:stop], stop + 2
        if kind == _INTEGER:
            return _number(data, pos + 1, eol), eol + 2
        if kind == _STATUS:
            return _text(data, pos + 1, eol), eol + 2
        if kind == _ERROR:
            # txredisapi's form of an error, which its callers check.
            return ResponseError(_text(data, pos + 1, eol)), eol + 2
        raise RespError(f"a reply of type {data[pos : pos + 1]!r}")

    def _eol(self, data: bytes, pos: int) -> int:
        eol = data.find(_CRLF, pos)
        if eol < 0:
            if len(data) - pos > self.max_line:
                raise RespError(f"a line longer than {self.max_line} bytes")
            raise _Incomplete(len(data) + 1)
        if eol - pos > self.max_line:
            raise RespError(f"a line longer than {self.max_line} bytes")
        return eol


def _number(data: bytes, start: int, eol: int) -> int:
    digits = data[start:eol]
    # int() would also take spaces, "+" and "_".
    if not (digits.isdigit() or (digits[:1] == b"-" and digits[1:].isdigit())):
        raise RespError(f"{digits[:32]!r} is not an integer")
    return int(digits)


def _text(data: bytes, start: int, eol: int) -> str:
    try:
        return data[start:eol].decode("utf-8")
    except UnicodeDecodeError:
        raise RespError("a line that is not UTF-8") from None
