# cython: boundscheck=False, wraparound=False
"""
The compiled L{mmo.bot.lazy.split_update}: the same cut of a push's map,
walked in C in one call instead of a call to msgpack's C{Unpacker} per key
and value (which was most of what reading a push cost a bot).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcmp, memcpy

cdef const char* _UPDATE = b"update"


cdef inline Py_ssize_t _be(const unsigned char* p, int n):
    """The big-endian unsigned integer of the C{n} bytes at C{p}."""
    cdef Py_ssize_t value = 0
    cdef int i
    for i in range(n):
        value = (value << 8) | p[i]
    return value


# How each first byte of a msgpack object reads (the same for every push,
# so a table, not a chain of tests per object): its header's length, and
# what follows it.
cdef enum:
    PLAIN = 0      # the header is all (ints, floats, nil, bool; fixext's data counted in it)
    FIXMAP = 1     # 2 x (low 4 bits) objects follow
    FIXARRAY = 2   # (low 4 bits) objects follow
    FIXSTR = 3     # (low 5 bits) bytes follow
    SIZED = 4      # str 8/16/32, bin 8/16/32: a big-endian length, then the bytes
    EXT = 5        # ext 8/16/32: a length, a type byte, then the bytes
    ARRAY = 6      # array 16/32: a count of objects
    MAP = 7        # map 16/32: a count of pairs
    BAD = 8        # 0xc1

cdef unsigned char _KIND[256]
cdef unsigned char _HEAD[256]


cdef void _tables():
    cdef int b
    for b in range(256):
        _KIND[b], _HEAD[b] = PLAIN, 1
    for b in range(0x80, 0x90):
        _KIND[b] = FIXMAP
    for b in range(0x90, 0xA0):
        _KIND[b] = FIXARRAY
    for b in range(0xA0, 0xC0):
        _KIND[b] = FIXSTR
    _KIND[0xC1] = BAD
    for b, head in ((0xC4, 2), (0xC5, 3), (0xC6, 5), (0xD9, 2), (0xDA, 3), (0xDB, 5)):
        _KIND[b], _HEAD[b] = SIZED, head
    for b, head in ((0xC7, 3), (0xC8, 4), (0xC9, 6)):
        _KIND[b], _HEAD[b] = EXT, head
    for b, head in ((0xCA, 5), (0xCB, 9), (0xCC, 2), (0xCD, 3), (0xCE, 5), (0xCF, 9),
                    (0xD0, 2), (0xD1, 3), (0xD2, 5), (0xD3, 9),
                    (0xD4, 3), (0xD5, 4), (0xD6, 6), (0xD7, 10), (0xD8, 18)):
        _HEAD[b] = head
    _KIND[0xDC], _HEAD[0xDC] = ARRAY, 3
    _KIND[0xDD], _HEAD[0xDD] = ARRAY, 5
    _KIND[0xDE], _HEAD[0xDE] = MAP, 3
    _KIND[0xDF], _HEAD[0xDF] = MAP, 5


_tables()


cdef Py_ssize_t _skip(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) except -1:
    """Where the msgpack object at C{i} ends (ValueError: cut short, or a bad byte)."""
    cdef Py_ssize_t left = 1, n, head
    cdef unsigned char b, kind
    while left:
        left -= 1
        if i >= end:
            raise ValueError("cut short")
        b = p[i]
        kind = _KIND[b]
        head = _HEAD[b]
        if i + head > end:
            raise ValueError("cut short")
        n = 0
        if kind == FIXMAP:
            left += 2 * (b & 0x0F)
        elif kind == FIXARRAY:
            left += b & 0x0F
        elif kind == FIXSTR:
            n = b & 0x1F
        elif kind == SIZED:
            n = _be(p + i + 1, head - 1)
        elif kind == EXT:
            n = _be(p + i + 1, head - 2)
        elif kind == ARRAY:
            left += _be(p + i + 1, head - 1)
        elif kind == MAP:
            left += 2 * _be(p + i + 1, head - 1)
        elif kind == BAD:
            raise ValueError("0xc1 is no msgpack")
        i += head + n
        if i > end:
            raise ValueError("cut short")
    return i


cdef Py_ssize_t _string(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, Py_ssize_t* length) except -1:
    """Where the bytes of the string at C{i} start (their count in C{length}); ValueError if none."""
    cdef unsigned char b
    cdef int head
    if i >= end:
        raise ValueError("cut short")
    b = p[i]
    if 0xA0 <= b <= 0xBF:
        length[0] = b & 0x1F
        head = 1
    elif b == 0xD9 or b == 0xDA or b == 0xDB:
        head = 2 if b == 0xD9 else (3 if b == 0xDA else 5)
        if i + head > end:
            raise ValueError("cut short")
        length[0] = _be(p + i + 1, head - 1)
    else:
        raise ValueError("a key that is not a string")
    if i + head + length[0] > end:
        raise ValueError("cut short")
    return i + head


def split_update(bytes body):
    """See L{mmo.bot.lazy.split_update}."""
    cdef const unsigned char* p = <const unsigned char*> PyBytes_AS_STRING(body)
    cdef Py_ssize_t end = PyBytes_GET_SIZE(body)
    cdef Py_ssize_t size, start, i, k, key, length
    cdef Py_ssize_t key_start = -1, value_start = 0, value_end = 0
    cdef unsigned char b
    if end == 0:
        raise ValueError("cut short")
    b = p[0]
    if 0x80 <= b <= 0x8F:
        size, start = b & 0x0F, 1
    elif b == 0xDE or b == 0xDF:
        start = 3 if b == 0xDE else 5
        if start > end:
            raise ValueError("cut short")
        size = _be(p + 1, start - 1)
    else:
        raise ValueError("not a map")
    i = start
    for k in range(size):
        key = i
        i = _string(p, i, end, &length)
        if length == 6 and memcmp(p + i, _UPDATE, 6) == 0:
            if key_start >= 0:
                raise ValueError("update twice")
            key_start = key
            value_start = i + 6
            value_end = _skip(p, value_start, end)
            i = value_end
        else:
            # Checked as the pure reading checks it (decoding the key).
            PyUnicode_DecodeUTF8(<char*> (p + i), length, NULL)
            i = _skip(p, i + length, end)
    if key_start < 0:
        return (body if i == end else body[:i]), None, i
    header = _map_header(size - 1)
    cdef Py_ssize_t h = PyBytes_GET_SIZE(header)
    cdef Py_ssize_t before = key_start - start, after = i - value_end
    rest = PyBytes_FromStringAndSize(NULL, h + before + after)
    cdef char* out = PyBytes_AS_STRING(rest)
    memcpy(out, PyBytes_AS_STRING(header), h)
    memcpy(out + h, p + start, before)
    memcpy(out + h + before, p + value_end, after)
    return rest, body[value_start:value_end], i


cdef bytes _map_header(Py_ssize_t size):
    if size < 16:
        return bytes((0x80 | size,))
    if size < 1 << 16:
        return b"\xde" + size.to_bytes(2, "big")
    return b"\xdf" + size.to_bytes(4, "big")
