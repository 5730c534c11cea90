"""
The one place where mmo reaches into a library's private names, because the
library gives no public way to do what is needed.  Each piece says which
library, which private name, and why; everything else in mmo uses public
API only.  Check these after upgrading the library.
"""

from __future__ import annotations

import os
from functools import partial

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet import tcp
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import (
    BufferingTLSTransport,
    TLSMemoryBIOFactory,
    TLSMemoryBIOProtocol,
    _AggregateSmallWrites,
)
from twisted.python.failure import Failure

try:
    from OpenSSL._util import ffi as _ffi
    from OpenSSL._util import lib as _lib
except ImportError:
    # A pyOpenSSL without them: its public methods, as Twisted calls them.
    _ffi = _lib = None

#: The most plaintext of one TLS record (what Twisted hands OpenSSL at once).
_RECORD = 2**14
#: The most a connection's send BIO is read of at once (as Twisted reads it).
_SEND_READ = 2**15
#: The most plaintext read from a connection at once (as Twisted reads it).
_RECEIVE_READ = 2**15


try:
    from hiredis import pack_command as _pack_command
except ImportError:
    _pack_command = None

#: The types hiredis packs as txredisapi does (UTF-8, decimal): the rest
#: are encoded by txredisapi first (a float as it formats one, a bool as
#: its name).
_PACKED_AS_IS = frozenset({bytes, str, int})
#: The charsets txredisapi encodes strings with as UTF-8 (None: C{str.encode()}).
_UTF8 = frozenset({None, "utf-8", "utf8", "UTF-8"})


class PackedCommands:
    """
    Mixin for txredisapi's Redis protocol (put it first among the bases):
    each command packed by hiredis's C{pack_command}, byte for byte what
    txredisapi's Python packs, in half its time for a short command and a
    quarter for one of 60 arguments (a zone's checkpoint).
    Bytes, UTF-8 strings and integers go to hiredis as they are; any
    other argument is encoded by txredisapi first (C{_encode_value}); a
    connection with another charset or error handler, a string that is
    not UTF-8, or no hiredis: txredisapi's own packing, which raises what
    it raises.

    Library: txredisapi (checked with 1.6.0) and hiredis (3.x).  Private
    names of C{txredisapi.BaseRedisProtocol}: C{_build_command} (where every
    command is packed) and C{_encode_value}.  txredisapi has no public way
    to choose how a command is packed.
    """

    def _build_command(self, *args, **kwargs):
        if _pack_command is None or self.errors != "strict" or self.charset not in _UTF8:
            return super()._build_command(*args, **kwargs)
        encode = self._encode_value
        try:
            return _pack_command(
                tuple(arg if type(arg) in _PACKED_AS_IS else encode(arg) for arg in args)
            )
        except UnicodeEncodeError:
            return super()._build_command(*args, **kwargs)


class MessageTooBigHook:
    """
    Mixin for an autobahn C{WebSocketServerProtocol}: L{message_too_big} is
    called when a client announces a frame or message over
    C{maxFramePayloadSize} / C{maxMessagePayloadSize}, before autobahn
    closes the connection with code 1009.

    Library: autobahn (checked with 26.11).  Private name:
    C{WebSocketProtocol._max_message_size_exceeded}, the hook autobahn calls
    as soon as a frame header announces too much (before the payload is
    buffered) and which then fails the connection.  autobahn has no public
    callback for it: C{onClose} comes only after the close, too late to
    send an error message first.
    """

    def message_too_big(self, size: int, limit: int, reason: str) -> None:
        """Override: C{size} bytes were announced, over C{limit}; C{reason} says so."""

    def _max_message_size_exceeded(self, msg_size, max_msg_size, reason) -> None:
        self.message_too_big(msg_size, max_msg_size, reason)
        super()._max_message_size_exceeded(msg_size, max_msg_size, reason)


def reset_int_n_string_receiver(protocol) -> None:
    """
    Forget the bytes an C{IntNStringReceiver} (C{Int32StringReceiver}...)
    holds of a frame not yet complete, so that the protocol can read a new
    connection from its first byte.

    Library: Twisted (checked with 26.10).  Private names:
    C{IntNStringReceiver._unprocessed} and C{_compatibilityOffset}, its
    buffer.  Twisted has no public way to empty it, a protocol serving one
    connection only; the client SDK follows its session to another gateway
    with the same protocol object, which the application holds.
    """
    protocol._unprocessed = b""
    protocol._compatibilityOffset = 0


def write_through(transport) -> None:
    """
    Have C{transport}, a Twisted socket connection (TCP or Unix), send
    what is written at once when nothing written before is still waiting,
    and buffer (and wait for the socket to be writable) only what the
    kernel does not take.  Twisted's own C{write} always buffers and asks
    the reactor to watch the socket for writability, which costs two
    C{epoll_ctl} and a reactor turn per write of a connection that is not
    behind: the cost of each push of a game server, which writes about
    once per connection per tick.  Order and the producer's pause (the
    transport's buffer size) are unchanged: only what the kernel took
    bypasses the buffer, and only when the buffer is empty (L{send_through}).
    The socket gets C{TCP_NODELAY}.  Any other transport is left alone.

    For a protocol whose own writes reach the socket through a wrapper it
    does not own (HAProxy's); Twisted's TLS protocol sends through without
    changing the transport at all (L{TLSWriteThrough}).

    Library: Twisted (checked with 26.10).  Private names: see
    L{send_through}.
    """
    if not _no_delay(transport):
        return
    # One partial object per connection: what a connection costs idle counts.
    transport.write = partial(send_through, transport)


def _no_delay(transport) -> bool:
    """
    Whether C{transport} is a socket connection (then with C{TCP_NODELAY}
    set), which L{send_through} can write to.
    """
    if not isinstance(transport, tcp.Connection):
        return False
    # Sending at once needs Nagle's algorithm off: a turn may still send
    # twice (TLS 1.3 sends its session tickets as the handshake ends, then
    # the first reply), and Nagle holds the second send until the peer
    # acknowledges the first, which a peer delays by 40 ms: every
    # connection's first answer (a login's hello) came that late.
    transport.setTcpNoDelay(True)
    return True


def send_through(transport, data: bytes) -> None:
    """
    Write C{data} to C{transport} (a C{tcp.Connection}) at once when nothing
    written before is waiting, buffering only what the kernel does not
    take; otherwise as Twisted's C{write}.

    Library: Twisted (checked with 26.10).  Private names of
    C{twisted.internet.abstract.FileDescriptor}: C{dataBuffer}, C{offset}
    and C{_tempDataLen} (what is buffered), C{_writeDisconnected}; and
    C{writeSomeData} (C{tcp.Connection}'s one send, public but not in an
    interface).  Twisted has no public way to write without buffering.
    """
    if (
        data
        and transport.connected
        and not transport._writeDisconnected
        and not transport._tempDataLen
        and transport.offset >= len(transport.dataBuffer)
        and type(data) is bytes
    ):
        sent = transport.writeSomeData(data)
        # A lost connection (an exception returned) is found by the
        # buffered path, as Twisted finds it.
        if type(sent) is int and sent > 0:
            if sent >= len(data):
                return
            data = data[sent:]
    type(transport).write(transport, data)


class TLSWriteThrough:
    """
    Mixin for Twisted's TLS protocol (C{TLSMemoryBIOProtocol} and its
    subclasses; put it first among the bases): what TLS has to send goes
    to the socket below through L{send_through}, and the socket gets
    C{TCP_NODELAY}.  The socket's transport is not changed; a connection
    keeps only the addresses L{RecordWrites} writes it by (a tuple, once
    it is written so).

    As the handshake ends, the connection gets new memory BIOs
    (L{fresh_bios}): the handshake's left theirs at their largest.

    L{writeNow} writes a connection's frames without waiting for the end
    of the turn.

    Library: Twisted (checked with 26.10).  Private names of
    C{twisted.protocols.tls.TLSMemoryBIOProtocol}: C{_flushSendBIO} (where
    every byte TLS makes is written to the transport, the handshake's
    included), C{_checkHandshakeStatus} (where the handshake ends),
    C{_handshakeDone}, C{_lostTLSConnection} and C{_tlsConnection}.
    Twisted has no public way to choose how the TLS protocol writes to its
    transport, nor a hook after its handshake that comes before the
    connection reads application data.
    """

    def makeConnection(self, transport) -> None:
        _no_delay(transport)
        super().makeConnection(transport)

    def _checkHandshakeStatus(self) -> None:
        super()._checkHandshakeStatus()
        if self._handshakeDone and not self._lostTLSConnection:
            # What the handshake left to send (TLS 1.3's session tickets)
            # goes first, all of it: the send BIO is then empty, and replaced.
            while self._sendSome():
                pass
            fresh_bios(self._tlsConnection)

    def _flushSendBIO(self) -> None:
        self._sendSome()

    def writeNow(self, data: bytes) -> None:
        """
        Write C{data} now: one TLS write of what this turn gathered before
        it (first, in the same record) and C{data}, sent at once, instead
        of at the end of the turn.  A caller that knows it has written all
        it will this turn (a delivery's frames for the connection) saves
        the gathering's delayed call (C{callLater(0)}, one per connection
        per turn) and its turn of the reactor's timed calls.  Order and the
        producer's pause are as with C{write}: the same bytes reach
        C{TLSMemoryBIOProtocol.write} in the same order, only sooner.

        Private names (Twisted, checked with 26.10): C{_aggregator} of
        C{BufferingTLSTransport}, the gatherer its C{write} is bound to
        (an C{_AggregateSmallWrites}; a C{_NullAggregator} once the
        connection is lost), and its C{_buffer}; Twisted has no public way
        to write past it, nor to flush it.
        """
        aggregator = getattr(self, "_aggregator", None)
        if type(aggregator) is not _AggregateSmallWrites:
            # Closed (or a TLS protocol that gathers nothing): as C{write}.
            self.write(data)
        elif aggregator._buffer:
            # Joined to what is gathered (its flush is already scheduled,
            # and finds nothing left).
            aggregator.write(data)
            aggregator.flush()
        elif (
            _lib is not None
            and type(data) is bytes
            and len(data) <= _RECORD
            and self._handshakeDone
            and not self._lostTLSConnection
            and not self._appSendBuffer
            and not (self.disconnecting and self._producer is None)
        ):
            self._writeRecord(data)
        else:
            TLSMemoryBIOProtocol.write(self, data)

    def _writeRecord(self, data: bytes) -> None:
        """
        What C{TLSMemoryBIOProtocol._write} does with C{data} (one record's
        worth, the handshake done, nothing buffered before it), without
        pyOpenSSL's C{Connection.send} around C{SSL_write} (half the cost of
        a small write: the buffer's context, the error check of a write
        that succeeded) nor Twisted's loop and slice.  A write OpenSSL does
        not take whole goes on as Twisted's would: the rest written by
        C{_write}, a C{WantReadError} buffered, another error the end of the
        connection.

        Private names: pyOpenSSL's C{Connection._ssl} and
        C{_raise_ssl_error} (its check of an C{SSL_write} result), and
        C{OpenSSL._util.lib}; Twisted's C{_write}, C{_bufferedWrite} and
        C{_tlsShutdownFinished}.
        """
        written = _lib.SSL_write(self._tlsConnection._ssl, data, len(data))
        if written == len(data):
            self._sendSome()
            return
        self._wroteRecord(data, written)

    def _wroteRecord(self, data: bytes, written: int) -> None:
        """
        The rest of L{_writeRecord} once C{SSL_write} of C{data} returned
        C{written}, less than all of it (OpenSSL's error queue as that call
        left it).
        """
        connection = self._tlsConnection
        if written > 0:
            self._sendSome()
            TLSMemoryBIOProtocol._write(self, data[written:])
            return
        try:
            connection._raise_ssl_error(connection._ssl, written)
        except WantReadError:
            self._bufferedWrite(data)
        except Error:
            self._tlsShutdownFinished(Failure())

    def _recordTarget(self):
        """
        C{(bio, ssl, bio address, fd)} for L{RecordWrites}: the send BIO,
        the addresses of the connection's C{SSL} object and of that BIO,
        and the socket's number; kept until L{fresh_bios} replaces the BIO
        (taking them again would cost 0.7 us a write).
        """
        bio = self._tlsConnection._from_ssl
        target = self._recordAddresses
        if target is None or target[0] is not bio:
            target = self._recordAddresses = (
                bio,
                int(_ffi.cast("uintptr_t", self._tlsConnection._ssl)),
                int(_ffi.cast("uintptr_t", bio)),
                self.transport.fileno(),
            )
        return target

    #: What L{_recordTarget} keeps: C{(bio, ssl address, bio address, fd)}.
    _recordAddresses = None

    def _flushReceiveBIO(self) -> None:
        """
        What C{TLSMemoryBIOProtocol._flushReceiveBIO} does (the plaintext
        of what was received, to the protocol, then what TLS has to send),
        reading with C{SSL_read} into one buffer for all connections: not
        pyOpenSSL's C{Connection.recv}, which makes a new 32 KB buffer per
        call and raises C{WantReadError} at the end of every read (one
        exception per read of every client), where C{SSL_get_error} says
        so here.  Every other outcome is C{recv}'s, handled as Twisted
        handles it.  (The check C{recv} makes of pyOpenSSL's callbacks,
        ALPN's and verification's, has nothing to say at the end of a
        read: a callback that fails fails the handshake, which is an
        error, checked as C{recv} checks it.)

        Private names: Twisted's C{_flushReceiveBIO},
        C{_lostTLSConnection}, C{_aborted}, C{_shutdownTLS} and
        C{_tlsShutdownFinished}; pyOpenSSL's C{Connection._ssl} and
        C{_raise_ssl_error}, and C{OpenSSL._util}.
        """
        buffer = _receive_buffer
        if buffer is None:
            super()._flushReceiveBIO()
            return
        connection = self._tlsConnection
        ssl = connection._ssl
        while not self._lostTLSConnection:
            read = _lib.SSL_read(ssl, buffer, _RECEIVE_READ)
            if read > 0:
                if not self._aborted:
                    ProtocolWrapper.dataReceived(self, _ffi.buffer(buffer, read)[:])
                continue
            if _lib.SSL_get_error(ssl, read) == _lib.SSL_ERROR_WANT_READ:
                break
            try:
                connection._raise_ssl_error(ssl, read)
            except WantReadError:
                break
            except ZeroReturnError:
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                self._tlsShutdownFinished(Failure())
        self._flushSendBIO()

    def _sendSome(self) -> bool:
        """Send what TLS has to send, 32 KB at most; whether there was any."""
        data = _take_sent(self._tlsConnection)
        if data is None:
            return False
        transport = self.transport
        if isinstance(transport, tcp.Connection):
            send_through(transport, data)
        else:
            transport.write(data)
        return True


class WriteThroughTLS(TLSWriteThrough, BufferingTLSTransport):
    """
    Twisted's TLS protocol (which gathers a connection's writes of one
    reactor turn into one TLS write) on a socket that sends that write at
    once, buffering only what the kernel does not take
    (L{TLSWriteThrough}): one C{send()} per connection per turn, and no
    C{epoll_ctl} unless the peer is behind; what it receives is read
    without an exception per read.  Clients' connections and internal
    links alike.
    """


class WriteThroughTLSFactory(TLSMemoryBIOFactory):
    """Twisted's TLS wrapping factory, its connections L{WriteThroughTLS}."""

    protocol = WriteThroughTLS


def _compiled_records():
    """
    C{mmo._tlswrite}, bound to the C{SSL_write} and C{BIO_read} of the
    OpenSSL pyOpenSSL uses; C{None} where it is not built, where
    C{MMO_PURE_PYTHON=1} is set, or where that OpenSSL's functions cannot
    be had (L{RecordWrites} then queues nothing).

    Private names: cryptography's C{hazmat.bindings._rust._openssl} (checked
    with 50.0), the cffi module pyOpenSSL's C{OpenSSL._util} wraps, whose
    C{ffi.addressof} gives a function's address; cryptography links its own
    OpenSSL, which no other module may link again.
    """
    if os.environ.get("MMO_PURE_PYTHON") == "1" or _lib is None:
        return None
    try:
        from cryptography.hazmat.bindings._rust import _openssl

        from mmo import _tlswrite
    except ImportError:
        return None
    ffi, lib = _openssl.ffi, _openssl.lib
    try:
        # The connections' pointers must be of the OpenSSL called.
        if ffi is not _ffi or lib.SSL_write is not _lib.SSL_write:
            return None
        _tlswrite.bind(
            int(ffi.cast("uintptr_t", ffi.addressof(lib, "SSL_write"))),
            int(ffi.cast("uintptr_t", ffi.addressof(lib, "BIO_read"))),
        )
    except (AttributeError, TypeError):
        return None
    return _tlswrite


class RecordWrites:
    """
    Writes to many TLS connections, each as L{TLSWriteThrough.writeNow}
    would write it, sent together (a zone's tick, to the connections of its
    players): L{add} queues each write that C{writeNow} would make as one
    record (L{TLSWriteThrough._writeRecord}) to a socket with nothing
    buffered (L{send_through}); L{send} then writes them all in one
    compiled loop (C{mmo._tlswrite}: C{SSL_write}, C{BIO_read}, C{send()}
    per connection, no Python call), and finishes in Python what did not
    complete there, as C{writeNow} finishes it: the rest of a partial
    send buffered by the transport (its producer paused past the buffer's
    size), an C{SSL_write} error handled as C{_writeRecord} handles it.
    Where the compiled module is missing, L{add} takes nothing.

    A connection takes the compiled path only while nothing else would
    happen on its way: the handshake done, nothing gathered for the end of
    the turn, nothing buffered in TLS nor in the socket's transport, not
    closing.  Between L{add} and L{send} only writes run (other
    connections', and those L{send} finishes, each on its own connection):
    none of them closes a socket (Twisted closes one in a later turn), so
    no queued socket number can be another's by then.

    Private names: those of L{TLSWriteThrough.writeNow} and
    L{send_through}; C{Connection._from_ssl} and C{_ssl} of pyOpenSSL (the
    connection's send BIO and C{SSL} object).
    """

    __slots__ = ("_entries", "_protocols", "_tags")

    #: Whether L{add} can take anything (the compiled module is there).
    compiled = False

    def __init__(self):
        self._entries: list[tuple] = []
        self._protocols: list = []
        self._tags: list = []

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, protocol, data: bytes, tag) -> bool:
        """
        Queue C{data} for C{protocol} (a transport), C{tag} being what
        L{send} names it by, if C{protocol} is a L{TLSWriteThrough} that
        C{writeNow} would write it to as one record sent at once; whether
        it was queued (if not, nothing was done: write it as usual).
        """
        if (
            not self.compiled
            or type(data) is not bytes
            or not data
            or len(data) > _RECORD
            or not isinstance(protocol, TLSWriteThrough)
        ):
            return False
        aggregator = getattr(protocol, "_aggregator", None)
        transport = protocol.transport
        if (
            type(aggregator) is not _AggregateSmallWrites
            or aggregator._buffer
            or not protocol._handshakeDone
            or protocol._lostTLSConnection
            or protocol._appSendBuffer
            or (protocol.disconnecting and protocol._producer is None)
            or not isinstance(transport, tcp.Connection)
            or not transport.connected
            or transport._writeDisconnected
            or transport._tempDataLen
            or transport.offset < len(transport.dataBuffer)
        ):
            return False
        _, ssl, bio, fd = protocol._recordTarget()
        self._entries.append((ssl, bio, fd, data))
        self._protocols.append(protocol)
        self._tags.append(tag)
        return True

    def send(self) -> list[tuple[object, Exception]]:
        """
        Write and send every queued write, in the order added, and forget
        them; returns C{(tag, exception)} for each write whose finishing in
        Python raised (as C{writeNow} would have raised it); the others
        are all written.
        """
        entries, protocols, tags = self._entries, self._protocols, self._tags
        self._entries, self._protocols, self._tags = [], [], []
        failed = []
        start = 0
        while start < len(entries):
            stopped = _records.send_records(entries, start)
            if stopped is None:
                break
            index, written, rest = stopped
            protocol = protocols[index]
            try:
                if rest is None:
                    protocol._wroteRecord(entries[index][3], written)
                else:
                    transport = protocol.transport
                    type(transport).write(transport, rest)
            except Exception as e:
                failed.append((tags[index], e))
            start = index + 1
        return failed


_records = _compiled_records()
RecordWrites.compiled = _records is not None

#: The buffer every connection's send BIO is read into (L{_take_sent}): one
#: for all, the reactor's thread reading one connection at a time.
_send_buffer = _ffi.new("char[]", _SEND_READ) if _ffi is not None else None
#: The buffer every connection's plaintext is read into
#: (L{TLSWriteThrough._flushReceiveBIO}), the same way.
_receive_buffer = _ffi.new("char[]", _RECEIVE_READ) if _ffi is not None else None


def _take_sent(connection) -> bytes | None:
    """
    What pyOpenSSL C{connection}'s send BIO holds, 32 KB at most, or
    C{None} when it is empty: C{Connection.bio_read}, without its checks of
    its argument, its new buffer per call (a C{malloc} of 32 KB) and the
    C{WantReadError} it raises when the BIO is empty.  Any other error of
    the BIO is raised as C{bio_read} raises it.

    Private names (pyOpenSSL, checked with 26.4): C{Connection._from_ssl}
    (its send BIO) and C{_handle_bio_errors}, and C{OpenSSL._util}'s
    C{ffi} and C{lib}, the bindings it calls OpenSSL with.
    """
    buffer = _send_buffer
    if buffer is None:
        try:
            return connection.bio_read(_SEND_READ)
        except WantReadError:
            return None
    bio = connection._from_ssl
    read = _lib.BIO_read(bio, buffer, _SEND_READ)
    if read > 0:
        return _ffi.buffer(buffer, read)[:]
    try:
        connection._handle_bio_errors(bio, read)
    except WantReadError:
        pass
    return None


def fresh_bios(connection) -> None:
    """
    Give C{connection} (a pyOpenSSL C{Connection} on memory BIOs, its
    handshake done and its send BIO read to the end) new memory BIOs, the
    bytes its receive BIO still holds (what the client sent right after
    its Finished) moved to the new one.

    Why: a memory BIO keeps the largest buffer it ever held.  The
    handshake's are the largest an idle connection's ever hold: the
    server's flight (its certificate chain: 2.5 KB) and the client's
    hello (a post-quantum key share: 2 KB), kept by every connection for
    its lifetime.  New BIOs grow to what the session sends and receives.

    Library: pyOpenSSL (checked with 26.4) and OpenSSL (3.0 to 4.0).
    Private names of C{OpenSSL.SSL.Connection}: C{_ssl}, C{_into_ssl} and
    C{_from_ssl} (the SSL object and its two BIOs, which pyOpenSSL makes
    and never frees itself: the SSL object owns them); and
    C{OpenSSL._util.lib}, the bindings pyOpenSSL calls them with.
    C{SSL_set_bio} with two new BIOs takes them over and frees the old
    ones (OpenSSL's documented rule).  pyOpenSSL has no public way to
    replace a connection's BIOs.
    """
    try:
        from OpenSSL._util import ffi, lib
    except ImportError:
        # A pyOpenSSL without these names: the connection keeps its BIOs.
        return
    old_in = getattr(connection, "_into_ssl", None)
    if old_in is None or getattr(connection, "_from_ssl", None) is None:
        return
    buffer = ffi.new("char[]", 4096)
    unread = []
    while (read := lib.BIO_read(old_in, buffer, 4096)) > 0:
        unread.append(ffi.buffer(buffer, read)[:])
    pending = b"".join(unread)
    new_in = lib.BIO_new(lib.BIO_s_mem())
    new_out = lib.BIO_new(lib.BIO_s_mem())
    if (
        new_in == ffi.NULL
        or new_out == ffi.NULL
        or (pending and lib.BIO_write(new_in, pending, len(pending)) != len(pending))
    ):
        # Out of memory: keep the old BIOs, the unread bytes put back.
        for bio in (new_in, new_out):
            if bio != ffi.NULL:
                lib.BIO_free(bio)
        if pending:
            lib.BIO_write(old_in, pending, len(pending))
        return
    lib.SSL_set_bio(connection._ssl, new_in, new_out)
    connection._into_ssl = new_in
    connection._from_ssl = new_out
