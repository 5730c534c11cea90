"""
Tests for L{mmo.wire}: the codec (bodies and frames), the framing protocol
both ends build on, and what the server does with any byte stream at all.

The framing and the server's robustness are checked with hypothesis: any
chunking of a valid stream yields exactly its messages, a cut stream yields
exactly the complete frames before the cut, and arbitrary bytes never make
the server raise, send an unreadable frame or close without a fatal error.
"""

from __future__ import annotations

import gc
import math
import struct

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial import unittest

from mmo.config import WireSection
from mmo.frontend.factory import ClientFactory
from mmo.frontend.protocol import ClientProtocol
from mmo.wire import PROTOCOL_VERSION, SUPPORTED_VERSIONS, codec, codes
from mmo.wire.codes import WireError
from mmo.wire.protocol import FramedProtocol
from tests.support import config_of, map_with_pairs, split_frames

#: Bounded hypothesis runs: the whole module runs in seconds.
BOUNDED = settings(max_examples=200, deadline=None)

PEER = IPv4Address("TCP", "192.0.2.1", 40000)

#: A small frame limit, so that fuzzing reaches it often: the smallest the
#: config allows, but at least room for every reply and error frame.
SMALL = max(256, WireSection.fields["max_frame_size"].minimum)


def split(data: bytes, cuts) -> list[bytes]:
    """C{data} cut at the offsets C{cuts} (in any order, repeats allowed)."""
    points = sorted({0, len(data), *(c for c in cuts if 0 <= c <= len(data))})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


def body_of_size(size: int, message: dict | None = None) -> bytes:
    """The body of C{message} padded with a "pad" string to exactly C{size} bytes."""
    message = dict(message or {"t": "x"})
    for length in range(size, -1, -1):
        body = codec.encode({**message, "pad": "a" * length})
        if len(body) == size:
            return body
    raise ValueError(f"no padding makes {message!r} {size} bytes long")


class Recorder(FramedProtocol):
    """A framed protocol that records what it receives."""

    def __init__(self, max_length: int = 65536):
        self.MAX_LENGTH = max_length
        self.messages: list[dict] = []
        self.errors: list[tuple[WireError, object]] = []

    def messageReceived(self, message: dict) -> None:
        self.messages.append(message)

    def wireError(self, error: WireError, request_id) -> None:
        self.errors.append((error, request_id))


def connected_recorder(max_length: int = 65536) -> Recorder:
    recorder = Recorder(max_length)
    recorder.makeConnection(StringTransport())
    return recorder


# -- strategies ---------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
#: Any value a body may hold: msgpack without extension types.
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
    ),
    max_leaves=12,
)
#: Any valid message: a map with string keys and a non-empty string "t".
MESSAGES = st.builds(
    lambda kind, fields: {**fields, "t": kind},
    st.text(min_size=1, max_size=16),
    st.dictionaries(st.text(max_size=8), VALUES, max_size=5),
)


class CodecTests(unittest.TestCase):
    """L{codec.encode}, L{codec.decode} and L{codec.frame}."""

    def assertBadFrame(self, body: bytes) -> WireError:
        error = self.assertRaises(WireError, codec.decode, body)
        self.assertEqual(error.code, codes.BAD_FRAME)
        self.assertTrue(error.fatal)
        return error

    def test_round_trip(self):
        message = {
            "t": "move",
            "id": 2**64 - 1,
            "x": -1.5,
            "big": -(2**63),
            "name": "Zoë",
            "blob": b"\x00\xff",
            "path": [[1, 2], [3, 4]],
            "opts": {"run": True, "target": None},
        }
        self.assertEqual(codec.decode(codec.encode(message)), message)

    @BOUNDED
    @given(MESSAGES)
    def test_round_trip_any(self, message):
        self.assertEqual(codec.decode(codec.encode(message)), message)

    @BOUNDED
    @given(
        st.text(min_size=1, max_size=16),
        st.dictionaries(st.text(max_size=8), VALUES, max_size=5),
        st.sampled_from([1, 127, 128, 65536, 2**32 - 1, 2**32, 2**53]),
    )
    def test_numbered_stem_is_the_push(self, kind, fields, seq):
        """
        A push encoded once (L{codec.push_stem}) and numbered per session
        (L{codec.numbered}) is a valid frame of exactly the message each
        session's push was encoded as before: C{{**fields, "t": kind, "seq": seq}}.
        """
        frame = codec.numbered(codec.push_stem(kind, fields), seq)
        (length,) = codec.HEADER.unpack(frame[:4])
        self.assertEqual(length, len(frame) - 4)
        self.assertEqual(codec.decode(frame[4:]), {**fields, "t": kind, "seq": seq})
        self.assertEqual(codec.numbered_body(codec.push_stem(kind, fields), seq), frame[4:])

    @BOUNDED
    @given(
        st.text(min_size=1, max_size=16),
        st.dictionaries(
            st.text(max_size=8),
            VALUES
            | st.lists(st.dictionaries(st.text(max_size=4), VALUES, max_size=3), max_size=40),
            max_size=5,
        ),
    )
    def test_stem_from_fragments(self, kind, fields):
        """
        A stem joined from packed fragments is the same bytes as the stem
        of the whole push.
        """
        fragments: dict[int, bytes] = {}
        self.assertEqual(codec.push_stem(kind, fields, fragments), codec.push_stem(kind, fields))

    def test_fragments_shared(self):
        """
        Items shared by the pushes of a batch are packed once, and every
        stem is the one of its own push, at every size of map and array.
        """
        entries = [{"id": f"npc-{i}", "x": i + 0.5, "y": -i * 1.25} for i in range(70000)]
        pushes = [
            {
                "tick": 7,
                "enter": [{"id": "a", "attrs": {"hp": 3}}],
                "update": entries[:5],
                "leave": ["b", "c"],
            },
            {"tick": 7, "enter": [], "update": entries[3:20], "leave": []},
            {"tick": 7, "enter": [], "update": entries, "leave": [], "reset": True},
            {**{f"k{i}": i for i in range(20)}, "update": entries[:16]},
            {"update": [entries[0], "not a map", 3, *entries[:16]], "seq": 5},
            {"update": entries[:15], "leave": [f"e-{i}" for i in range(16)]},
        ]
        fragments: dict[int, bytes] = {}
        for fields in pushes:
            stem = codec.push_stem("world.update", fields, fragments)
            self.assertEqual(stem, codec.push_stem("world.update", fields))
            decoded = codec.decode(codec.numbered(stem, 9)[4:])
            self.assertEqual(
                decoded,
                {**{k: v for k, v in fields.items() if k != "seq"}, "t": "world.update", "seq": 9},
            )
        self.assertEqual(fragments[id(entries[0])], codec.encode(entries[0]))

    def test_packer_after_a_failure(self):
        """A value the packer cannot encode leaves nothing behind in the next one."""
        self.assertRaises(TypeError, codec.encode, {"a": [1, 2, object()]})
        self.assertEqual(codec.encode({"b": 1}), msgpack.packb({"b": 1}, use_bin_type=True))

    def test_fragments_unencodable(self):
        """A field msgpack cannot encode is a TypeError, with fragments too."""
        self.assertRaises(
            TypeError, codec.push_stem, "world.update", {"update": [{"x": object()}] * 16}, {}
        )
        self.assertRaises(TypeError, codec.push_stem, "world.update", {"x": object()}, {})

    def test_stem_and_four_bytes(self):
        """Every frame of a stem is the stem and four bytes of number (uint 32)."""
        stem = codec.push_stem("chat.message", {"text": "hi", "seq": 9, "t": "x"})
        one, other = codec.numbered(stem, 1), codec.numbered(stem, 70000)
        self.assertEqual((one[:-4], other[:-4]), (stem, stem))
        self.assertEqual(codec.decode(one[4:]), {"text": "hi", "t": "chat.message", "seq": 1})

    def test_nan_and_infinity(self):
        """Floats that are not numbers pass through the codec unchanged."""
        decoded = codec.decode(codec.encode({"t": "x", "a": math.inf, "b": math.nan}))
        self.assertEqual(decoded["a"], math.inf)
        self.assertTrue(math.isnan(decoded["b"]))

    def test_bytes_stay_bytes(self):
        """msgpack bin decodes to bytes and str to str: the two are kept apart."""
        decoded = codec.decode(codec.encode({"t": "x", "b": b"ab", "s": "ab"}))
        self.assertIsInstance(decoded["b"], bytes)
        self.assertIsInstance(decoded["s"], str)

    def test_frame_layout(self):
        """A frame is the body's length, 4 bytes big-endian, then the body."""
        message = {"t": "chat", "text": "x" * 300}
        body = codec.encode(message)
        data = codec.frame(message)
        self.assertEqual(data[:4], struct.pack(">I", len(body)))
        self.assertEqual(data[4:], body)
        self.assertEqual(len(data), 4 + len(body))

    def test_frame_example(self):
        """The worked example of docs/protocol.md, byte for byte."""
        self.assertEqual(
            codec.frame({"t": "ping", "id": 2}).hex(" "),
            "00 00 00 0c 82 a1 74 a4 70 69 6e 67 a2 69 64 02",
        )

    def test_versions(self):
        self.assertIn(PROTOCOL_VERSION, SUPPORTED_VERSIONS)
        self.assertEqual(PROTOCOL_VERSION, max(SUPPORTED_VERSIONS))

    def test_not_msgpack(self):
        # 0xc1 is never used by msgpack.
        error = self.assertBadFrame(b"\xc1")
        self.assertIn("not valid msgpack", error.message)

    def test_invalid_utf8(self):
        """A str must be valid UTF-8 (bin is for raw bytes)."""
        self.assertBadFrame(b"\x82\xa1t\xa1x\xa1s\xa2\xff\xfe")
        self.assertBadFrame(b"\x81\xa1t\xa2\xff\xfe")

    def test_truncated_body(self):
        self.assertBadFrame(codec.encode({"t": "ping", "id": 2})[:-1])

    def test_empty_body(self):
        self.assertBadFrame(b"")

    def test_trailing_bytes(self):
        body = codec.encode({"t": "ping"})
        self.assertBadFrame(body + b"\x00")
        self.assertBadFrame(body + body)

    def test_not_a_map(self):
        for value in ([], ["t", "ping"], 1, "ping", None, True, b"t", 1.5):
            error = self.assertBadFrame(msgpack.packb(value, use_bin_type=True))
            self.assertEqual(error.message, "body must be a map")

    def test_missing_type(self):
        self.assertBadFrame(codec.encode({}))
        self.assertBadFrame(codec.encode({"id": 1}))

    def test_empty_type(self):
        self.assertBadFrame(codec.encode({"t": ""}))

    def test_type_not_a_string(self):
        for kind in (1, None, True, b"ping", ["ping"], {"a": 1}, 1.0):
            error = self.assertBadFrame(codec.encode({"t": kind}))
            self.assertEqual(error.message, "body must have a non-empty string 't'")

    def test_non_string_keys(self):
        """Map keys are strings: integers are refused, at any depth."""
        self.assertBadFrame(msgpack.packb({"t": "x", 1: 2}))
        self.assertBadFrame(msgpack.packb({"t": "x", "a": {1: 2}}))

    def test_binary_keys(self):
        """A bin key is not a string key, at any depth."""
        self.assertBadFrame(msgpack.packb({"t": "x", b"k": 1}, use_bin_type=True))
        self.assertBadFrame(msgpack.packb({"t": "x", "a": [{b"k": 1}]}, use_bin_type=True))

    def test_duplicate_keys(self):
        """
        A key that appears twice in a map is refused, at any depth, rather
        than the last value silently winning.
        """
        twice_t = map_with_pairs(("t", msgpack.packb("ping")), ("t", msgpack.packb("bye")))
        error = self.assertBadFrame(twice_t)
        self.assertIn("twice", error.message)
        nested = map_with_pairs(("x", msgpack.packb(1)), ("x", msgpack.packb(2)))
        self.assertBadFrame(map_with_pairs(("t", msgpack.packb("x")), ("a", nested)))
        in_array = b"\x91" + nested
        self.assertBadFrame(map_with_pairs(("t", msgpack.packb("x")), ("a", in_array)))
        # Keys equal but for case are different keys.
        upper = map_with_pairs(("t", msgpack.packb("x")), ("T", msgpack.packb("y")))
        self.assertEqual(codec.decode(upper), {"t": "x", "T": "y"})

    def test_extension_types(self):
        for code in (0, 5, 127):
            ext = msgpack.ExtType(code, b"data")
            error = self.assertBadFrame(msgpack.packb({"t": "x", "a": ext}))
            self.assertIn("extension type", error.message)
            self.assertBadFrame(msgpack.packb({"t": "x", "a": [1, {"b": ext}]}))
            self.assertBadFrame(msgpack.packb(ext))

    def test_timestamp_extension(self):
        """
        The predefined timestamp extension (type -1) is an extension type
        too: it must not slip through as a L{msgpack.Timestamp}.
        """
        stamp = msgpack.Timestamp(1_700_000_000, 0)
        self.assertBadFrame(msgpack.packb({"t": "x", "at": stamp}))
        self.assertBadFrame(msgpack.packb({"t": "x", "at": [stamp]}))

    def test_shape_only(self):
        """
        Not strict (a client reading its server): the message must still be a
        map with a string "t" and hold no extension type, but nested keys
        and values are not each checked.
        """
        nested = msgpack.packb({"t": "x", "a": [{b"k": 1}]}, use_bin_type=True)
        self.assertEqual(codec.decode(nested, strict=False), {"t": "x", "a": [{b"k": 1}]})
        for body in (
            msgpack.packb([1]),
            msgpack.packb({"t": 1}),
            msgpack.packb({"t": "x", 1: 2}),
            msgpack.packb({"t": "x", "a": msgpack.ExtType(5, b"d")}),
            b"\xc1",
        ):
            with self.assertRaises(WireError) as caught:
                codec.decode(body, strict=False)
            self.assertEqual(caught.exception.code, codes.BAD_FRAME)
        message = {"t": "world.update", "update": [{"id": "c-1", "x": 1.5}], "leave": []}
        self.assertEqual(codec.decode(codec.encode(message), strict=False), message)

    def test_wire_error(self):
        error = WireError(codes.BAD_REQUEST, "field 'x' is required")
        self.assertFalse(error.fatal)
        self.assertEqual(str(error), "bad_request: field 'x' is required")
        self.assertTrue(WireError(codes.BAD_FRAME, "m", fatal=True).fatal)

    def test_retry_after(self):
        """Every unavailable error tells when to retry; other errors do not."""
        self.assertEqual(
            WireError(codes.UNAVAILABLE, "m").retry_after, codes.UNAVAILABLE_RETRY_AFTER
        )
        self.assertEqual(WireError(codes.UNAVAILABLE, "m", retry_after=3.0).retry_after, 3.0)
        self.assertIsNone(WireError(codes.INTERNAL, "m").retry_after)

    def test_codes_described(self):
        """Every error code has a description; goodbye codes are separate."""
        errors = {
            codes.BAD_FRAME,
            codes.FRAME_TOO_LARGE,
            codes.HANDSHAKE_REQUIRED,
            codes.HANDSHAKE_TIMEOUT,
            codes.UNSUPPORTED_VERSION,
            codes.IDLE_TIMEOUT,
            codes.UNKNOWN_TYPE,
            codes.BAD_REQUEST,
            codes.INTERNAL,
        }
        # The core codes are described (services add theirs to the same table).
        self.assertLessEqual(errors, set(codes.DESCRIPTIONS))
        self.assertEqual(codes.SHUTDOWN, "shutdown")


class FramedProtocolTests(unittest.TestCase):
    """L{FramedProtocol}: frames in, messages out, and back."""

    def test_messages_in_order(self):
        recorder = connected_recorder()
        first, second = {"t": "a", "n": 1}, {"t": "b", "n": 2}
        recorder.dataReceived(codec.frame(first) + codec.frame(second))
        self.assertEqual(recorder.messages, [first, second])
        self.assertEqual(recorder.errors, [])

    def test_partial_frame_waits(self):
        recorder = connected_recorder()
        data = codec.frame({"t": "a"})
        for byte in range(len(data) - 1):
            recorder.dataReceived(data[byte : byte + 1])
        self.assertEqual(recorder.messages, [])
        recorder.dataReceived(data[-1:])
        self.assertEqual(recorder.messages, [{"t": "a"}])

    def test_bad_body(self):
        """A bad body is a fatal bad_frame error not tied to a request."""
        recorder = connected_recorder()
        recorder.dataReceived(struct.pack(">I", 1) + b"\xc1")
        [(error, request_id)] = recorder.errors
        self.assertEqual((error.code, error.fatal, request_id), (codes.BAD_FRAME, True, None))
        self.assertEqual(recorder.messages, [])

    def test_zero_length(self):
        recorder = connected_recorder()
        recorder.dataReceived(b"\x00\x00\x00\x00")
        [(error, request_id)] = recorder.errors
        self.assertEqual((error.code, error.fatal), (codes.BAD_FRAME, True))

    def test_largest_frame(self):
        """A body of exactly MAX_LENGTH bytes is accepted."""
        recorder = connected_recorder(100)
        body = body_of_size(100)
        recorder.dataReceived(struct.pack(">I", 100) + body)
        self.assertEqual(len(recorder.messages), 1)
        self.assertEqual(recorder.errors, [])

    def test_too_large(self):
        """A length prefix over MAX_LENGTH is a fatal frame_too_large error."""
        recorder = connected_recorder(100)
        recorder.dataReceived(struct.pack(">I", 101))
        [(error, request_id)] = recorder.errors
        self.assertEqual(error.code, codes.FRAME_TOO_LARGE)
        self.assertTrue(error.fatal)
        self.assertIsNone(request_id)
        self.assertIn("101", error.message)

    def test_closing_stops_parsing(self):
        """Once closing, no further frame is parsed."""
        recorder = connected_recorder()
        recorder.dataReceived(codec.frame({"t": "a"}))
        recorder.closing = True
        recorder.dataReceived(codec.frame({"t": "b"}) + struct.pack(">I", 1) + b"\xc1")
        self.assertEqual(recorder.messages, [{"t": "a"}])
        self.assertEqual(recorder.errors, [])

    def test_closing_ignores_oversized_prefix(self):
        """
        Once closing, not even an oversized length prefix is reported: the
        rest of the stream is not read.
        """
        recorder = connected_recorder(100)
        recorder.closing = True
        recorder.dataReceived(struct.pack(">I", 10_000))
        recorder.dataReceived(b"x")
        self.assertEqual(recorder.errors, [])

    def test_send_message(self):
        recorder = connected_recorder()
        recorder.sendMessage({"t": "x", "n": 1})
        self.assertEqual(recorder.transport.value(), codec.frame({"t": "x", "n": 1}))

    def test_send_too_large(self):
        """A message over MAX_LENGTH is refused before anything is written."""
        recorder = connected_recorder(64)
        error = self.assertRaises(WireError, recorder.sendMessage, {"t": "x", "p": "a" * 64})
        self.assertEqual(error.code, codes.FRAME_TOO_LARGE)
        self.assertEqual(recorder.transport.value(), b"")

    @BOUNDED
    @given(st.lists(MESSAGES, max_size=8), st.data())
    def test_any_chunking(self, messages, data):
        """Valid frames split at any points yield exactly the messages, in order."""
        stream = b"".join(codec.frame(m) for m in messages)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        recorder = connected_recorder()
        for chunk in split(stream, cuts):
            recorder.dataReceived(chunk)
        self.assertEqual(recorder.messages, messages)
        self.assertEqual(recorder.errors, [])

    @BOUNDED
    @given(st.lists(MESSAGES, max_size=8), st.data())
    def test_truncated_stream(self, messages, data):
        """
        A valid stream cut anywhere yields exactly the frames completed before
        the cut and no error; the rest, when it comes, yields the others.
        """
        frames = [codec.frame(m) for m in messages]
        stream = b"".join(frames)
        cut = data.draw(st.integers(0, len(stream)))
        cuts = data.draw(st.lists(st.integers(0, cut), max_size=6))
        complete, end = [], 0
        for message, data_ in zip(messages, frames, strict=True):
            end += len(data_)
            if end <= cut:
                complete.append(message)
        recorder = connected_recorder()
        for chunk in split(stream[:cut], cuts):
            recorder.dataReceived(chunk)
        self.assertEqual(recorder.messages, complete)
        self.assertEqual(recorder.errors, [])
        self.assertEqual(recorder.transport.value(), b"")
        recorder.dataReceived(stream[cut:])
        self.assertEqual(recorder.messages, messages)


# -- the server facing arbitrary bytes ------------------------------------


class ByeRecordingProtocol(ClientProtocol):
    """The server protocol, remembering whether the client said goodbye."""

    saidBye = False

    def message_bye(self, message):
        self.saidBye = True
        return super().message_bye(message)


class ByeRecordingFactory(ClientFactory):
    protocol = ByeRecordingProtocol


def server(max_frame_size: int = 65536, factory_class=ByeRecordingFactory):
    """A server-side connection on a L{StringTransport}, with a fake clock."""
    config = config_of(wire={"max_frame_size": max_frame_size})
    factory = factory_class(config, config.processes["mmo"], reactor=MemoryReactorClock())
    protocol = factory.buildProtocol(PEER)
    transport = StringTransport(peerAddress=PEER)
    protocol.makeConnection(transport)
    return protocol, transport


HELLO = {"t": "hello", "id": 1, "versions": [PROTOCOL_VERSION], "client": "fuzz"}

#: Messages a client might send, good and bad.
CLIENT_MESSAGES = st.one_of(
    st.just(HELLO),
    st.builds(
        lambda versions, request_id: {"t": "hello", "versions": versions, "id": request_id},
        st.lists(st.one_of(st.integers(-2, 3), st.booleans(), st.floats(0, 2)), max_size=3),
        st.integers(0, 5),
    ),
    st.builds(
        lambda request_id: {"t": "ping", "id": request_id},
        st.one_of(st.integers(-3, 2**64 - 1), st.booleans(), st.text(max_size=3), st.none()),
    ),
    st.just({"t": "bye"}),
    st.builds(lambda kind: {"t": kind, "id": 9}, st.text(min_size=1, max_size=SMALL)),
    # Long types, quoted back in error messages.
    st.integers(1, SMALL).map(lambda length: {"t": "x" * length, "id": 9}),
    MESSAGES,
)

#: Pieces of a byte stream: noise, frames of good and bad messages, frames of
#: random bodies and length prefixes of any size.
PIECES = st.one_of(
    st.binary(max_size=24),
    CLIENT_MESSAGES.map(codec.frame),
    st.binary(max_size=40).map(lambda body: struct.pack(">I", len(body)) + body),
    st.integers(0, 2**32 - 1).map(lambda length: struct.pack(">I", length)),
)


class ServerStreamTests(unittest.TestCase):
    """The gateway's L{ClientProtocol} fed arbitrary bytes."""

    def setUp(self):
        # A failure left unhandled in a Deferred is reported against this test.
        self.addCleanup(gc.collect)

    def checkOutput(self, protocol, transport, max_frame_size):
        """
        Everything the server wrote is a sequence of whole, decodable frames
        within the limit; it closed only after a fatal error frame (and then
        wrote nothing more) or because the client said goodbye.
        """
        bodies, rest = split_frames(transport.value())
        self.assertEqual(rest, b"", "the server wrote an incomplete frame")
        written = []
        for body in bodies:
            self.assertLessEqual(len(body), max_frame_size)
            written.append(codec.decode(body))
        fatal = [i for i, m in enumerate(written) if m["t"] == "error" and m["fatal"] is True]
        for message in written:
            self.assertIn(message["t"], ("reply", "error"))
            if message["t"] == "error":
                self.assertIn(message["code"], codes.DESCRIPTIONS)
                self.assertIsInstance(message["message"], str)
                self.assertIn(message["fatal"], (True, False))
                request_id = message["id"]
                self.assertTrue(
                    request_id is None
                    or (isinstance(request_id, int) and not isinstance(request_id, bool))
                )
        if transport.disconnecting:
            if not protocol.saidBye:
                self.assertEqual(fatal, [len(written) - 1], written)
            else:
                self.assertLessEqual(len(fatal), 1)
        else:
            self.assertEqual(fatal, [], written)

    @BOUNDED
    @given(
        st.sampled_from([SMALL, 4096, 65536]),
        st.lists(PIECES, max_size=12),
        st.data(),
    )
    def test_any_bytes(self, max_frame_size, pieces, data):
        stream = b"".join(pieces)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        protocol, transport = server(max_frame_size)
        for chunk in split(stream, cuts):
            protocol.dataReceived(chunk)
        self.checkOutput(protocol, transport, max_frame_size)

    @BOUNDED
    @given(st.lists(PIECES, max_size=12), st.data())
    def test_any_bytes_after_handshake(self, pieces, data):
        """The same, on a connection whose handshake is done."""
        stream = codec.frame(HELLO) + b"".join(pieces)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        protocol, transport = server(SMALL)
        for chunk in split(stream, cuts):
            protocol.dataReceived(chunk)
        self.checkOutput(protocol, transport, SMALL)
        bodies, _ = split_frames(transport.value())
        self.assertEqual(codec.decode(bodies[0])["t"], "reply")

    @BOUNDED
    @given(
        st.sampled_from([SMALL, 4096, 65536, 16 * 1024 * 1024]),
        st.data(),
        st.booleans(),
    )
    def test_length_over_limit(self, max_frame_size, data, handshake_first):
        """
        A length prefix above max_frame_size gets a fatal frame_too_large
        error frame and a close, however the prefix is split, before or
        after the handshake.
        """
        length = data.draw(st.integers(max_frame_size + 1, 2**32 - 1))
        protocol, transport = server(max_frame_size)
        before = b""
        if handshake_first:
            protocol.dataReceived(codec.frame(HELLO))
            before = transport.value()
            self.assertEqual(codec.decode(split_frames(before)[0][0])["t"], "reply")
        for byte in struct.pack(">I", length):
            self.assertFalse(transport.disconnecting)
            protocol.dataReceived(bytes([byte]))
        written = transport.value()[len(before) :]
        bodies, rest = split_frames(written)
        self.assertEqual(rest, b"")
        self.assertEqual(
            [codec.decode(body) for body in bodies],
            [
                {
                    "t": "error",
                    "id": None,
                    "code": codes.FRAME_TOO_LARGE,
                    "message": f"frame of {length} bytes is over the limit of {max_frame_size}",
                    "fatal": True,
                }
            ],
        )
        self.assertTrue(transport.disconnecting)

    def test_nothing_after_fatal_error(self):
        """
        After a fatal error frame the server writes nothing more, whatever
        else arrives before the connection is gone (under TLS the close waits
        for the peer's close_notify, so more data can arrive).
        """
        protocol, transport = server(SMALL)
        protocol.dataReceived(struct.pack(">I", 1) + b"\xc1")
        self.assertTrue(transport.disconnecting)
        first = transport.value()
        self.assertEqual(codec.decode(split_frames(first)[0][0])["code"], codes.BAD_FRAME)
        protocol.dataReceived(struct.pack(">I", 10_000))
        protocol.dataReceived(b"more")
        protocol.dataReceived(codec.frame(HELLO))
        self.assertEqual(transport.value(), first)

    def test_fatal_error_then_oversized_prefix_in_one_chunk(self):
        """A bad frame and an oversized prefix in one chunk get one error frame."""
        protocol, transport = server(SMALL)
        protocol.dataReceived(b"\x00\x00\x00\x00" + struct.pack(">I", 10_000))
        bodies, rest = split_frames(transport.value())
        self.assertEqual([codec.decode(b)["code"] for b in bodies], [codes.BAD_FRAME])

    def test_duplicate_key_is_fatal(self):
        """A frame whose map has a key twice: bad_frame, fatal, and the connection closes."""
        protocol, transport = server(SMALL)
        protocol.dataReceived(codec.frame(HELLO))
        transport.clear()
        body = map_with_pairs(
            ("t", msgpack.packb("ping")), ("id", msgpack.packb(2)), ("id", msgpack.packb(3))
        )
        protocol.dataReceived(struct.pack(">I", len(body)) + body)
        [body], rest = split_frames(transport.value())
        error = codec.decode(body)
        self.assertEqual(
            (error["t"], error["code"], error["id"], error["fatal"]),
            ("error", codes.BAD_FRAME, None, True),
        )
        self.assertTrue(transport.disconnecting)

    def test_long_type_before_handshake(self):
        """
        An error frame quoting a long message type still fits the frame limit
        (it is not raised out of dataReceived).
        """
        protocol, transport = server(SMALL)
        protocol.dataReceived(codec.frame({"t": "x" * (SMALL - 10)}))
        [body], rest = split_frames(transport.value())
        self.assertLessEqual(len(body), SMALL)
        error = codec.decode(body)
        self.assertEqual((error["code"], error["fatal"]), (codes.HANDSHAKE_REQUIRED, True))
        self.assertTrue(transport.disconnecting)
