"""Minimal hand-rolled MQTT 3.1.1 / 5.0 packet codec for raw-socket tests.

Only what the end-to-end tests need: building well-formed (and deliberately
malformed) client packets, and reading/decoding the few server packets the
tests look at (CONNACK, SUBACK, PUBLISH, DISCONNECT).
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types (upper nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = (
    8, 9, 10, 11, 12, 13, 14, 15)

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

V311 = 4
V5 = 5

# MQTT 5 property identifiers and their wire types.
_BYTE, _U16, _U32, _VARINT, _UTF8, _BIN, _PAIR = range(7)
PROPERTY_TYPES = {
    0x01: _BYTE,    # Payload Format Indicator
    0x02: _U32,     # Message Expiry Interval
    0x03: _UTF8,    # Content Type
    0x08: _UTF8,    # Response Topic
    0x09: _BIN,     # Correlation Data
    0x0B: _VARINT,  # Subscription Identifier
    0x11: _U32,     # Session Expiry Interval
    0x12: _UTF8,    # Assigned Client Identifier
    0x13: _U16,     # Server Keep Alive
    0x15: _UTF8,    # Authentication Method
    0x16: _BIN,     # Authentication Data
    0x17: _BYTE,    # Request Problem Information
    0x18: _U32,     # Will Delay Interval
    0x19: _BYTE,    # Request Response Information
    0x1A: _UTF8,    # Response Information
    0x1C: _UTF8,    # Server Reference
    0x1F: _UTF8,    # Reason String
    0x21: _U16,     # Receive Maximum
    0x22: _U16,     # Topic Alias Maximum
    0x23: _U16,     # Topic Alias
    0x24: _BYTE,    # Maximum QoS
    0x25: _BYTE,    # Retain Available
    0x26: _PAIR,    # User Property
    0x27: _U32,     # Maximum Packet Size
    0x28: _BYTE,    # Wildcard Subscription Available
    0x29: _BYTE,    # Subscription Identifier Available
    0x2A: _BYTE,    # Shared Subscription Available
}
PROP_PAYLOAD_FORMAT = 0x01
PROP_CONTENT_TYPE = 0x03
PROP_SESSION_EXPIRY = 0x11
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_RECEIVE_MAXIMUM = 0x21
PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_TOPIC_ALIAS = 0x23
PROP_MAXIMUM_QOS = 0x24
PROP_RETAIN_AVAILABLE = 0x25
PROP_MAXIMUM_PACKET_SIZE = 0x27
PROP_WILDCARD_SUB_AVAILABLE = 0x28
PROP_SUB_ID_AVAILABLE = 0x29
PROP_SHARED_SUB_AVAILABLE = 0x2A
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_WILL_DELAY = 0x18
PROP_REASON_STRING = 0x1F

# A few reason codes used by the tests.
RC_MALFORMED = 0x81
RC_PROTOCOL_ERROR = 0x82
RC_KEEP_ALIVE_TIMEOUT = 0x8D
RC_SESSION_TAKEN_OVER = 0x8E
RC_TOPIC_FILTER_INVALID = 0x8F
RC_TOPIC_NAME_INVALID = 0x90
RC_BAD_USERNAME_OR_PASSWORD = 0x86
RC_NOT_AUTHORIZED = 0x87
RC_SERVER_SHUTTING_DOWN = 0x8B
RC_RECEIVE_MAXIMUM_EXCEEDED = 0x93
RC_PACKET_TOO_LARGE = 0x95

# MQTT 3.1.1 CONNACK return codes
V3_IDENTIFIER_REJECTED = 2
V3_BAD_USERNAME_OR_PASSWORD = 4
V3_NOT_AUTHORIZED = 5


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

def varint(n: int) -> bytes:
    if n < 0 or n > 268_435_455:
        raise ValueError(n)
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _raw(s: str | bytes) -> bytes:
    return s.encode("utf-8") if isinstance(s, str) else s


def string(s: str | bytes) -> bytes:
    """Length-prefixed string. Bytes are sent verbatim (used for bad UTF-8)."""
    b = _raw(s)
    return struct.pack("!H", len(b)) + b


binary = string


def properties(props: list[tuple[int, object]] | None) -> bytes:
    body = bytearray()
    for pid, value in props or []:
        kind = PROPERTY_TYPES[pid]
        body += varint(pid)
        if kind == _BYTE:
            body += struct.pack("!B", value)
        elif kind == _U16:
            body += struct.pack("!H", value)
        elif kind == _U32:
            body += struct.pack("!I", value)
        elif kind == _VARINT:
            body += varint(value)
        elif kind in (_UTF8, _BIN):
            body += string(value)
        elif kind == _PAIR:
            k, v = value
            body += string(k) + string(v)
    return varint(len(body)) + bytes(body)


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


def connect(client_id: str | bytes = "", version: int = V311, keepalive: int = 60,
            clean: bool = True, props: list | None = None,
            will: dict | None = None, username: str | None = None,
            password: bytes | None = None) -> bytes:
    """CONNECT. `will` = dict(topic, payload, qos=0, retain=False, props=None)."""
    flags = 0
    if clean:
        flags |= 0x02
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    vh = string("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        vh += properties(props)
    payload = string(client_id)
    if will:
        if version == V5:
            payload += properties(will.get("props"))
        payload += string(will["topic"]) + binary(will["payload"])
    if username is not None:
        payload += string(username)
    if password is not None:
        payload += binary(password)
    return packet(0x10, vh + payload)


def publish(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
            dup: bool = False, packet_id: int | None = None, version: int = V311,
            props: list | None = None) -> bytes:
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    vh = string(topic)
    if qos:
        vh += struct.pack("!H", packet_id or 1)
    if version == V5:
        vh += properties(props)
    return packet(first, vh + payload)


def subscribe(packet_id: int, filters: list[tuple[str | bytes, int]], version: int = V311,
              props: list | None = None, first_byte: int = 0x82) -> bytes:
    """SUBSCRIBE; `filters` is [(filter, options_byte)]. Header flags MUST be 0b0010."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += properties(props)
    for flt, opts in filters:
        body += string(flt) + bytes([opts])
    return packet(first_byte, body)


def puback(packet_id: int) -> bytes:
    return packet(0x40, struct.pack("!H", packet_id))


def pubrec(packet_id: int) -> bytes:
    return packet(0x50, struct.pack("!H", packet_id))


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect(version: int = V311, reason: int = 0, props: list | None = None) -> bytes:
    if version == V5 and (reason or props):
        return packet(0xE0, bytes([reason]) + properties(props))
    return b"\xe0\x00"


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        return f"<{self.name} flags={self.flags:#x} body={self.body[:40]!r}>"


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    mult, value = 1, 0
    for _ in range(4):
        b = buf[pos]
        pos += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos
        mult *= 128
    raise ValueError("malformed variable byte integer")


def parse_properties(buf: bytes, pos: int) -> tuple[dict[int, object], int]:
    """Returns ({id: value}, new_pos). User properties collect into a list."""
    length, pos = _read_varint(buf, pos)
    end = pos + length
    out: dict[int, object] = {}
    while pos < end:
        pid, pos = _read_varint(buf, pos)
        kind = PROPERTY_TYPES[pid]
        if kind == _BYTE:
            val, pos = buf[pos], pos + 1
        elif kind == _U16:
            val, pos = struct.unpack_from("!H", buf, pos)[0], pos + 2
        elif kind == _U32:
            val, pos = struct.unpack_from("!I", buf, pos)[0], pos + 4
        elif kind == _VARINT:
            val, pos = _read_varint(buf, pos)
        elif kind in (_UTF8, _BIN):
            n = struct.unpack_from("!H", buf, pos)[0]
            val, pos = buf[pos + 2:pos + 2 + n], pos + 2 + n
        else:
            n = struct.unpack_from("!H", buf, pos)[0]
            k = buf[pos + 2:pos + 2 + n]
            pos += 2 + n
            m = struct.unpack_from("!H", buf, pos)[0]
            v = buf[pos + 2:pos + 2 + m]
            pos += 2 + m
            out.setdefault(pid, []).append((k, v))
            continue
        out[pid] = val
    return out, end


@dataclass
class Connack:
    session_present: bool
    code: int
    props: dict = field(default_factory=dict)


def decode_connack(p: Packet, version: int) -> Connack:
    assert p.type == CONNACK, f"expected CONNACK, got {p!r}"
    props = {}
    if version == V5 and len(p.body) > 2:
        props, _ = parse_properties(p.body, 2)
    return Connack(bool(p.body[0] & 1), p.body[1], props)


def ack_packet_id(p: Packet) -> int:
    """Packet identifier of a PUBACK/PUBREC/PUBREL/PUBCOMP/SUBACK/UNSUBACK."""
    return struct.unpack_from("!H", p.body, 0)[0]


def ack_reason(p: Packet) -> int:
    """Reason code of a v5 PUBACK/PUBREC/PUBREL/PUBCOMP (absent means 0x00)."""
    assert p.type in (PUBACK, PUBREC, PUBREL, PUBCOMP), f"expected an ack, got {p!r}"
    return p.body[2] if len(p.body) > 2 else 0


def suback_codes(p: Packet, version: int) -> list[int]:
    assert p.type == SUBACK, f"expected SUBACK, got {p!r}"
    pos = 2
    if version == V5:
        _, pos = parse_properties(p.body, pos)
    return list(p.body[pos:])


@dataclass
class Publish:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    packet_id: int | None
    props: dict


def decode_publish(p: Packet, version: int) -> Publish:
    assert p.type == PUBLISH, f"expected PUBLISH, got {p!r}"
    qos = (p.flags >> 1) & 3
    n = struct.unpack_from("!H", p.body, 0)[0]
    topic = p.body[2:2 + n].decode("utf-8")
    pos = 2 + n
    packet_id = None
    if qos:
        packet_id = struct.unpack_from("!H", p.body, pos)[0]
        pos += 2
    props: dict = {}
    if version == V5:
        props, pos = parse_properties(p.body, pos)
    return Publish(topic, p.body[pos:], qos, bool(p.flags & 1), packet_id, props)


def disconnect_reason(p: Packet) -> int:
    """Reason code of a (v5) DISCONNECT; an empty body means 0x00."""
    assert p.type == DISCONNECT, f"expected DISCONNECT, got {p!r}"
    return p.body[0] if p.body else 0


# --------------------------------------------------------------------------
# A blocking raw client
# --------------------------------------------------------------------------

class ConnectionClosed(Exception):
    pass


class RawClient:
    """A TCP connection that speaks raw bytes; every read is bounded."""

    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self.closed_by_peer = False

    # -- writing
    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes) -> bool:
        """Send, but treat the peer having already closed as a normal outcome."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            self.closed_by_peer = True
            return False

    # -- reading
    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from broker before deadline")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from broker before deadline") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed_by_peer = True
            raise ConnectionClosed()
        self._buf += chunk

    def read_packet(self, timeout: float = 5.0) -> Packet:
        """Next packet. Raises ConnectionClosed on EOF, TimeoutError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            buf = bytes(self._buf)
            if len(buf) >= 2:
                try:
                    length, pos = _read_varint(buf, 1)
                except IndexError:
                    length = None
                if length is not None and len(buf) >= pos + length:
                    del self._buf[:pos + length]
                    return Packet(buf[0] >> 4, buf[0] & 0x0F, buf[pos:pos + length])
            self._fill(deadline)

    def connect(self, client_id: str = "", version: int = V311, timeout: float = 5.0,
                **kw) -> Connack:
        self.send(connect(client_id, version=version, **kw))
        ack = decode_connack(self.read_packet(timeout), version)
        return ack

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Read until the broker closes the connection; return what arrived first.

        Fails the test if the connection is still open at the deadline.
        """
        deadline = time.monotonic() + timeout
        got: list[Packet] = []
        while True:
            try:
                got.append(self.read_packet(max(0.0, deadline - time.monotonic())))
            except ConnectionClosed:
                return got
            except TimeoutError:
                raise AssertionError(
                    f"broker did not close the connection within {timeout}s "
                    f"(packets received meanwhile: {got!r})") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close with RST (no FIN handshake, no DISCONNECT): an abrupt network loss."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
