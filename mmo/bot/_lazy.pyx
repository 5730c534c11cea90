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


cdef Py_ssize_t _skip(const unsigned char* p, Py_ssize_t i, Py_ssize_t end) except -1:
    """Where the msgpack object at C{i} ends (ValueError: cut short, or a bad byte)."""
    cdef Py_ssize_t left = 1, n, head
    cdef unsigned char b
    while left:
        left -= 1
        if i >= end:
            raise ValueError("cut short")
        b = p[i]
        n = 0
        if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
            head = 1
        elif b <= 0x8F:
            head = 1
            left += 2 * (b & 0x0F)
        elif b <= 0x9F:
            head = 1
            left += b & 0x0F
        elif b <= 0xBF:
            head = 1
            n = b & 0x1F
        elif b == 0xC1:
            raise ValueError("0xc1 is no msgpack")
        elif b == 0xC4 or b == 0xD9:
            head = 2
        elif b == 0xC5 or b == 0xDA:
            head = 3
        elif b == 0xC6 or b == 0xDB:
            head = 5
        elif b == 0xC7:
            head = 3
        elif b == 0xC8:
            head = 4
        elif b == 0xC9:
            head = 6
        elif b == 0xCA or b == 0xCE or b == 0xD2:
            head = 5
        elif b == 0xCB or b == 0xCF or b == 0xD3:
            head = 9
        elif b == 0xCC or b == 0xD0:
            head = 2
        elif b == 0xCD or b == 0xD1:
            head = 3
        elif b == 0xD4:
            head = 3
        elif b == 0xD5:
            head = 4
        elif b == 0xD6:
            head = 6
        elif b == 0xD7:
            head = 10
        elif b == 0xD8:
            head = 18
        else:
            # 0xdc-0xdf: array 16/32, map 16/32.
            head = 3 if b == 0xDC or b == 0xDE else 5
        if i + head > end:
            raise ValueError("cut short")
        if b == 0xC4 or b == 0xC5 or b == 0xC6 or b == 0xD9 or b == 0xDA or b == 0xDB:
            n = _be(p + i + 1, head - 1)
        elif b == 0xC7 or b == 0xC8 or b == 0xC9:
            # ext 8/16/32: the length, then the type byte (counted in head).
            n = _be(p + i + 1, head - 2)
        elif b == 0xDC or b == 0xDD:
            left += _be(p + i + 1, head - 1)
        elif b == 0xDE or b == 0xDF:
            left += 2 * _be(p + i + 1, head - 1)
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
