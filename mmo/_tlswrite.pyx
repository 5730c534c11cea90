# cython: language_level=3, boundscheck=False, wraparound=False
"""
The TLS writes of many connections in one compiled loop: for each, one
C{SSL_write} of its plaintext (one record), the record read out of the
connection's send memory BIO (C{BIO_read}) and sent on its socket
(C{send()}, without blocking).  L{mmo.compat.RecordWrites} checks that each
connection can take this path and finishes in Python what does not
complete here; this module knows nothing of Twisted nor of pyOpenSSL.

OpenSSL is called through the function pointers L{bind} is given: those of
the OpenSSL that pyOpenSSL uses (cryptography's, linked into its own
extension), never a library this module links itself.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.errno cimport EINTR, errno
from libc.stdint cimport uintptr_t


cdef extern from "<sys/types.h>":
    ctypedef long ssize_t


cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    int MSG_DONTWAIT
    int MSG_NOSIGNAL


ctypedef int (*ssl_write_f)(void *ssl, const void *buf, int num) noexcept nogil
ctypedef int (*bio_read_f)(void *bio, void *buf, int size) noexcept nogil

cdef enum:
    # What one BIO_read takes at most: a record of 16 KB of plaintext and
    # its overhead in one read.
    READ = 32768

cdef ssl_write_f _ssl_write = NULL
cdef bio_read_f _bio_read = NULL
# The reactor's thread writes one connection at a time: one buffer for all.
cdef char _buffer[READ]


def bind(uintptr_t ssl_write, uintptr_t bio_read):
    """
    The addresses of C{SSL_write} and C{BIO_read} to call, those of the
    OpenSSL the connections' C{SSL} objects belong to.
    """
    global _ssl_write, _bio_read
    _ssl_write = <ssl_write_f>ssl_write
    _bio_read = <bio_read_f>bio_read


cdef bytes _drain(void *bio, Py_ssize_t offset, Py_ssize_t size):
    """
    What the socket did not take: the buffer's bytes from C{offset} to
    C{size}, then all the BIO still holds, in order.
    """
    cdef int read
    chunks = [PyBytes_FromStringAndSize(_buffer + offset, size - offset)]
    while True:
        read = _bio_read(bio, _buffer, READ)
        if read <= 0:
            break
        chunks.append(PyBytes_FromStringAndSize(_buffer, read))
    return b"".join(chunks)


def send_records(list entries, Py_ssize_t start):
    """
    Write and send C{entries[start:]} in order, each C{(ssl, bio, fd,
    data)}: C{ssl} and C{bio} the addresses of a connection's C{SSL} and
    send memory BIO, C{fd} its socket (non-blocking), C{data} its
    plaintext (bytes, 1 to 16384 of them).

    Stops at the first entry that does not complete, and returns C{(index,
    written, rest)}:
      - C{written} less than C{len(data)}: C{SSL_write} returned C{written}
        (the error, if any, still in OpenSSL's queue for the caller to
        read); nothing of it was read from the BIO or sent;
      - otherwise C{rest}, the bytes of the BIO that the socket did not
        take (partly sent, would block, or an error: the caller's
        buffered write finds which).
    Returns C{None} once every entry completed.
    """
    cdef Py_ssize_t index, count = len(entries)
    cdef tuple entry
    cdef bytes data
    cdef void *ssl
    cdef void *bio
    cdef int fd, size, written, read
    cdef ssize_t sent
    if _ssl_write == NULL or _bio_read == NULL:
        raise RuntimeError("OpenSSL's functions are not bound")
    for index in range(start, count):
        entry = <tuple>entries[index]
        ssl = <void *><uintptr_t>entry[0]
        bio = <void *><uintptr_t>entry[1]
        fd = entry[2]
        data = <bytes>entry[3]
        size = <int>PyBytes_GET_SIZE(data)
        written = _ssl_write(ssl, PyBytes_AS_STRING(data), size)
        if written != size:
            return (index, written, None)
        while True:
            read = _bio_read(bio, _buffer, READ)
            if read <= 0:
                break
            sent = send(fd, _buffer, read, MSG_DONTWAIT | MSG_NOSIGNAL)
            while sent < 0 and errno == EINTR:
                sent = send(fd, _buffer, read, MSG_DONTWAIT | MSG_NOSIGNAL)
            if sent != read:
                # As a send of Twisted's: what the kernel did not take now
                # is buffered, not tried again at once.
                return (index, written, _drain(bio, sent if sent > 0 else 0, read))
    return None
