"""Limits and what the broker announces about them.

  max_packet_size           a larger packet: v5 DISCONNECT 0x95 then close; v3.1.1 close
  receive_maximum           one QoS 2 PUBLISH beyond it, unreleased: DISCONNECT 0x93
  client Maximum Packet Size  messages too large for the client are not sent to it
  CONNACK properties, assigned client identifiers, broker-assigned topic aliases,
  a client that floods the broker and never reads, v5 property pass-through.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path

import pytest

import rawmqtt as raw
from helpers import (ABSENCE_WAIT, TIMEOUT, V5, V311, VERSIONS, PacketTypes,
                     assert_broker_healthy, props, unique)

PROTO = {V311: raw.V311, V5: raw.V5}

MAX_PACKET = 1024


@pytest.fixture(scope="module")
def small_packet_broker(module_broker_factory):
    return module_broker_factory(max_packet_size=MAX_PACKET)


def _connected(broker, version) -> raw.RawClient:
    c = raw.RawClient(broker.host, broker.port)
    ack = c.connect(unique("lim"), version=PROTO[version])
    assert ack.code == 0, ack
    return c


# ----------------------------------------------------------- max_packet_size

@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("how", ["whole-packet", "header-only"])
def test_packet_over_max_packet_size_disconnects(small_packet_broker, version, how):
    b = small_packet_broker
    if version == V5:
        with raw.RawClient(b.host, b.port) as c:
            ack = c.connect(unique("lim"), version=raw.V5)
            assert ack.props.get(raw.PROP_MAXIMUM_PACKET_SIZE) == MAX_PACKET, ack.props
    # a packet that fits is fine
    with _connected(b, version) as c:
        c.send(raw.publish(unique("lim/ok"), b"x" * (MAX_PACKET - 100), qos=1, packet_id=7,
                           version=PROTO[version]))
        ack = c.read_packet()
        assert (ack.type, raw.ack_packet_id(ack)) == (raw.PUBACK, 7), ack
    with _connected(b, version) as c:
        pkt = raw.publish(unique("lim/big"), b"x" * (2 * MAX_PACKET), qos=1, packet_id=8,
                          version=PROTO[version])
        if how == "header-only":
            # announce the size, send nothing more: the broker must not wait
            # for (or buffer) a body it will refuse anyway
            pkt = pkt[:4]
        c.send_tolerant(pkt)
        before_close = c.wait_closed(timeout=5.0)
    if version == V311:
        assert before_close == [], f"v3.1.1: expected a bare close, got {before_close}"
    else:
        assert [p.type for p in before_close] == [raw.DISCONNECT], before_close
        assert raw.disconnect_reason(before_close[0]) == raw.RC_PACKET_TOO_LARGE, before_close
    assert_broker_healthy(b, version)


# ----------------------------------------------------------- receive_maximum

@pytest.mark.millwright_only(reason=(
    "mosquitto 2.0.11 answers the excess QoS 2 PUBLISH with PUBREC 0x97 (quota "
    "exceeded) instead of the DISCONNECT 0x93 the spec asks for (3.3.4)"))
def test_exceeding_receive_maximum_with_unreleased_qos2_disconnects(broker_factory):
    b = broker_factory(receive_maximum=5)
    with raw.RawClient(b.host, b.port) as c:
        ack = c.connect(unique("rm"), version=raw.V5)
        assert ack.code == 0 and ack.props.get(raw.PROP_RECEIVE_MAXIMUM) == 5, ack
        topic = unique("rm/t")
        for pid in range(1, 6):
            c.send(raw.publish(topic, b"q2", qos=2, packet_id=pid, version=raw.V5))
        for pid in range(1, 6):
            rec = c.read_packet()
            assert rec.type == raw.PUBREC and raw.ack_packet_id(rec) == pid, rec
            assert raw.ack_reason(rec) < 0x80, rec
        # never PUBREL: the sixth is one more than the broker allowed
        c.send(raw.publish(topic, b"q2", qos=2, packet_id=6, version=raw.V5))
        before_close = c.wait_closed(timeout=5.0)
    assert [p.type for p in before_close] == [raw.DISCONNECT], before_close
    assert raw.disconnect_reason(before_close[0]) == raw.RC_RECEIVE_MAXIMUM_EXCEEDED
    assert_broker_healthy(b, V5)


# ------------------------------------------------- client Maximum Packet Size

@pytest.mark.parametrize("qos", [0, 1])
def test_client_maximum_packet_size_is_honoured(shared_broker, clients, qos):
    topic = unique("mps/t")
    sub = clients(shared_broker, version=V5)
    sub.connect(properties=props(PacketTypes.CONNECT, MaximumPacketSize=256))
    sub.subscribe(topic, qos)
    pub = clients(shared_broker, version=V5)
    pub.connect()
    pub.publish(topic, b"B" * 1000, qos=qos)   # ~1 KB PUBLISH: too large for sub
    pub.publish(topic, b"small-1", qos=qos)
    pub.publish(topic, b"M" * 150, qos=qos)    # fits in 256 bytes with the header
    pub.publish(topic, b"small-2", qos=qos)
    sub.messages.wait_for_payload(b"small-2")
    msgs = sub.messages.assert_stays(3)
    assert [m.payload for m in msgs] == [b"small-1", b"M" * 150, b"small-2"]
    assert sub.is_connected, "broker dropped the client instead of skipping the message"


def test_client_maximum_packet_size_applies_to_retained_messages(broker, clients):
    base = unique("mps/r")
    pub = clients(broker, version=V5)
    pub.connect()
    pub.publish(f"{base}/big", b"B" * 1000, qos=1, retain=True)
    pub.publish(f"{base}/small", b"small", qos=1, retain=True)
    sub = clients(broker, version=V5)
    sub.connect(properties=props(PacketTypes.CONNECT, MaximumPacketSize=256))
    sub.subscribe(f"{base}/#", 1)
    sub.messages.wait_for_payload(b"small")
    assert [m.payload for m in sub.messages.assert_stays(1)] == [b"small"]


def test_too_large_queued_message_does_not_block_a_session_queue(broker, clients):
    """A persistent session reconnects with a small Maximum Packet Size while a
    too-large QoS 1 message is at the head of its queue: that one is skipped,
    the rest are delivered."""
    topic, cid = unique("mps/q"), unique("mps-sess")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)
    s = clients(broker, cid, version=V5)
    s.connect(properties=expiry)
    s.subscribe(topic, 1)
    s.disconnect()
    pub = clients(broker, version=V5)
    pub.connect()
    pub.publish(topic, b"B" * 1000, qos=1)
    for i in range(3):
        pub.publish(topic, f"after-{i}".encode(), qos=1)
    s2 = clients(broker, cid, version=V5)
    small = props(PacketTypes.CONNECT, SessionExpiryInterval=3600, MaximumPacketSize=256)
    assert s2.connect(clean_start=False, properties=small).session_present
    s2.messages.wait_for_payload(b"after-2")
    assert [m.payload for m in s2.messages.assert_stays(3)] == [
        b"after-0", b"after-1", b"after-2"]


# ------------------------------------------------------ CONNACK and identity

def _connack_props(broker) -> dict:
    with raw.RawClient(broker.host, broker.port) as c:
        ack = c.connect(unique("ca"), version=raw.V5)
        assert ack.code == 0
        return ack.props


def test_connack_properties_describe_configured_limits(broker_factory):
    b = broker_factory(max_packet_size=4096, receive_maximum=7, topic_alias_maximum=9)
    p = _connack_props(b)
    assert p.get(raw.PROP_MAXIMUM_PACKET_SIZE) == 4096, p
    assert p.get(raw.PROP_RECEIVE_MAXIMUM) == 7, p
    assert p.get(raw.PROP_TOPIC_ALIAS_MAXIMUM) == 9, p
    # an absent property means "available" (spec 3.2.2.3.5 ff.); if sent it must be 1
    for pid in (raw.PROP_RETAIN_AVAILABLE, raw.PROP_WILDCARD_SUB_AVAILABLE,
                raw.PROP_SUB_ID_AVAILABLE, raw.PROP_SHARED_SUB_AVAILABLE):
        assert p.get(pid, 1) == 1, (hex(pid), p)
    assert p.get(raw.PROP_MAXIMUM_QOS, 2) == 2, p


@pytest.mark.millwright_only(reason=(
    "product behaviour: Millwright states every capability explicitly; mosquitto "
    "omits properties whose value is the default"))
def test_millwright_connack_advertises_every_capability(broker_factory):
    b = broker_factory(max_packet_size=4096, receive_maximum=7, topic_alias_maximum=9)
    p = _connack_props(b)
    expected = {
        raw.PROP_TOPIC_ALIAS_MAXIMUM: 9,
        raw.PROP_RECEIVE_MAXIMUM: 7,
        raw.PROP_MAXIMUM_PACKET_SIZE: 4096,
        raw.PROP_RETAIN_AVAILABLE: 1,
        raw.PROP_SHARED_SUB_AVAILABLE: 1,
        raw.PROP_WILDCARD_SUB_AVAILABLE: 1,
        raw.PROP_SUB_ID_AVAILABLE: 1,
    }
    got = {pid: p.get(pid) for pid in expected}
    assert got == expected, {hex(k): v for k, v in p.items()}


def test_empty_client_id_v5_gets_assigned_client_identifier(shared_broker):
    ids = []
    for _ in range(2):
        with raw.RawClient(shared_broker.host, shared_broker.port) as c:
            ack = c.connect("", version=raw.V5)
            assert ack.code == 0, ack
            assigned = ack.props.get(raw.PROP_ASSIGNED_CLIENT_ID)
            assert assigned, f"no Assigned Client Identifier in CONNACK: {ack.props}"
            ids.append(assigned)
            # the connection is usable
            c.send(raw.subscribe(1, [(unique("aci/t"), 1)], version=raw.V5))
            assert raw.suback_codes(c.read_packet(), raw.V5) == [1]
    assert ids[0] != ids[1], ids


def test_empty_client_id_v311_with_clean_session_0_is_refused(shared_broker):
    with raw.RawClient(shared_broker.host, shared_broker.port) as c:
        ack = c.connect("", version=raw.V311, clean=False)
        assert ack.code == raw.V3_IDENTIFIER_REJECTED, ack  # [MQTT-3.1.3-8]
        assert c.wait_closed(timeout=5.0) == []
    with raw.RawClient(shared_broker.host, shared_broker.port) as c:  # clean session 1: fine
        assert c.connect("", version=raw.V311, clean=True).code == 0


# ----------------------------------------------- broker-assigned topic aliases

def _resolve(msgs, alias_max):
    """Resolve topic aliases the way a client must: per connection, starting empty."""
    table: dict[int, str] = {}
    out = []
    for m in msgs:
        alias = getattr(m.properties, "TopicAlias", None) if m.properties else None
        if alias is None:
            assert m.topic, f"message {m.payload!r} has neither topic nor alias"
            out.append((m.topic, m.payload))
            continue
        assert alias_max, f"alias {alias} sent to a client that allows none ({m.payload!r})"
        assert 1 <= alias <= alias_max, f"alias {alias} outside 1..{alias_max}"
        if m.topic:
            table[alias] = m.topic
        else:
            assert alias in table, (
                f"{m.payload!r}: alias {alias} used on this connection before being set")
        out.append((table[alias], m.payload))
    return out


@pytest.mark.parametrize("alias_max", [0, 2, 10])
def test_broker_assigned_topic_aliases_resolve_to_the_right_topics(
        shared_broker, clients, broker_kind, alias_max):
    # paho-mqtt 2.2 does not resolve incoming topic aliases itself, so the test
    # keeps the alias table (as the spec describes it, per connection).
    base = unique("alias")
    topics = [f"{base}/first/topic", f"{base}/second/topic", f"{base}/third"]
    sub = clients(shared_broker, version=V5)
    connect_props = (props(PacketTypes.CONNECT, TopicAliasMaximum=alias_max)
                     if alias_max else None)
    sub.connect(properties=connect_props)
    sub.subscribe(f"{base}/#", 1)
    pub = clients(shared_broker, version=V5)
    pub.connect()
    order = [0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 0, 2, 0, 1, 2, 2, 0, 1, 1, 0]  # 20, irregular
    sent = [(topics[t], f"m{i:02d}".encode()) for i, t in enumerate(order)]
    for topic, payload in sent:
        pub.publish(topic, payload, qos=1)
    msgs = sub.messages.wait_for(20)
    assert _resolve(msgs, alias_max) == sent
    aliased = sum(1 for m in msgs if not m.topic)
    if broker_kind == "millwright" and alias_max:
        # product behaviour (docs/configuration.md, topic_alias_maximum);
        # mosquitto 2.0.11 never assigns aliases, which the spec allows
        assert aliased > 0, "Millwright did not use topic aliases toward a client allowing them"
    sub.messages.assert_stays(20)


@pytest.mark.parametrize("alias_max_after", [0, 5])
def test_topic_aliases_do_not_survive_into_a_new_connection(shared_broker, clients,
                                                            alias_max_after):
    """Alias mappings belong to a network connection [MQTT-3.3.2-7]: after a
    reconnect (same session) the broker must set each alias again before using
    it, and must not use any if the new connection allows none."""
    topic, cid = unique("alias-re/t"), unique("alias-re")
    s = clients(shared_broker, cid, version=V5)
    s.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=3600,
                               TopicAliasMaximum=5))
    s.subscribe(topic, 1)
    pub = clients(shared_broker, version=V5)
    pub.connect()
    for i in range(3):
        pub.publish(topic, f"first-{i}".encode(), qos=1)
    first = s.messages.wait_for(3)
    assert _resolve(first, 5) == [(topic, f"first-{i}".encode()) for i in range(3)]
    s.disconnect()
    for i in range(3):  # queued while offline
        pub.publish(topic, f"queued-{i}".encode(), qos=1)
    p = {"SessionExpiryInterval": 3600}
    if alias_max_after:
        p["TopicAliasMaximum"] = alias_max_after
    s2 = clients(shared_broker, cid, version=V5)
    assert s2.connect(clean_start=False,
                      properties=props(PacketTypes.CONNECT, **p)).session_present
    s2.messages.wait_for(3)
    pub.publish(topic, b"live", qos=1)
    msgs = s2.messages.wait_for(4)
    assert _resolve(msgs, alias_max_after) == (
        [(topic, f"queued-{i}".encode()) for i in range(3)] + [(topic, b"live")])


# --------------------------------------------------- property pass-through

def test_payload_format_and_content_type_pass_through(shared_broker, clients):
    topic = unique("pfi/t")
    sub = clients(shared_broker, version=V5)
    sub.connect()
    sub.subscribe(topic, 1)
    pub = clients(shared_broker, version=V5)
    pub.connect()
    pub.publish(topic, '{"t": 21.5}', qos=1, retain=True, properties=props(
        PacketTypes.PUBLISH, PayloadFormatIndicator=1, ContentType="application/json"))
    pub.publish(topic, b"\x00\x01binary", qos=1, properties=props(
        PacketTypes.PUBLISH, PayloadFormatIndicator=0, ContentType="application/octet-stream"))
    live = sub.messages.wait_for(2)
    late = clients(shared_broker, version=V5)   # gets the retained copy
    late.connect()
    late.subscribe(topic, 1)
    [retained] = late.messages.wait_for(1)
    for m, pfi, ctype in [(live[0], 1, "application/json"),
                          (live[1], 0, "application/octet-stream"),
                          (retained, 1, "application/json")]:
        # an absent Payload Format Indicator means 0
        assert getattr(m.properties, "PayloadFormatIndicator", 0) == pfi, m.properties
        assert getattr(m.properties, "ContentType", None) == ctype, m.properties
    assert live[0].payload == retained.payload == b'{"t": 21.5}'


# -------------------------------------------------- a client that never reads

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _Pump:
    """Non-blocking writer of whole packets at a target rate (never splits the
    stream mid-packet, so a slow broker only delays it)."""

    def __init__(self, client: raw.RawClient, make_packet, rate: int):
        self.client, self.make_packet, self.rate = client, make_packet, rate
        self.sock = client.sock
        self.sock.setblocking(False)
        self.pending = bytearray()
        self.queued = self.written = 0
        self.closed = False

    def step(self, elapsed: float, writable: bool) -> None:
        due = int(elapsed * self.rate)
        while self.queued < due and len(self.pending) < 1 << 20:
            self.pending += self.make_packet(self.queued)
            self.queued += 1
        if writable and self.pending and not self.closed:
            try:
                n = self.sock.send(self.pending)
                del self.pending[:n]
                self.written += n
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self.closed = True


@pytest.mark.millwright_only(reason="uses Millwright's outbound_queue setting")
def test_client_that_floods_and_never_reads_does_not_exhaust_broker(broker_factory):
    """A client subscribes to its own topic and publishes QoS 1 at ~1000 msg/s
    (64 KiB each, plus a SUBSCRIBE every 50) without ever reading its socket,
    while a well-behaved client publishes another ~1000 msg/s of 64 KiB into
    the same subscription. Everything owed to the flooder (PUBACKs, SUBACKs,
    ~190 MB of messages) piles up; unbounded buffering would pass 200 MB."""
    b = broker_factory(outbound_queue=100)
    pid = b.proc.pid
    rss_start = _rss_kb(pid)
    topic = unique("flood/t")
    payload = b"F" * 65536
    flooder = raw.RawClient(b.host, b.port)
    flooder.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    feeder = raw.RawClient(b.host, b.port)
    try:
        assert flooder.connect(unique("flooder"), version=raw.V311).code == 0
        flooder.send(raw.subscribe(1, [(topic, 1)]))
        assert raw.suback_codes(flooder.read_packet(), raw.V311) == [1]
        assert feeder.connect(unique("feeder"), version=raw.V311).code == 0

        def flood_packet(i):
            pkt = raw.publish(topic, payload, qos=1, packet_id=i % 65535 + 1)
            if i % 50 == 0:
                pkt += raw.subscribe(i % 65535 + 1, [(f"{topic}/{i}", 1)])
            return pkt

        pumps = [_Pump(flooder, flood_packet, 1000),
                 _Pump(feeder, lambda i: raw.publish(topic, payload, qos=1,
                                                     packet_id=i % 65535 + 1), 1000)]
        rss_max = rss_start
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < 3.0:
            socks = [p.sock for p in pumps if not p.closed]
            readable, writable, _ = select.select([feeder.sock], socks, [], 0.01)
            if readable:  # the feeder reads (and discards) its PUBACKs
                try:
                    if not feeder.sock.recv(65536):
                        pumps[1].closed = True
                except (BlockingIOError, ConnectionResetError):
                    pass
            for p in pumps:
                p.step(elapsed, p.sock in writable)
            rss_max = max(rss_max, _rss_kb(pid))
        # the flooder is still connected and unread (or was cut off): others are served
        assert_broker_healthy(b, V5, timeout=TIMEOUT)
        rss_max = max(rss_max, _rss_kb(pid))
    finally:
        flooder.abort()
        feeder.abort()
    stats = (f"broker RSS {rss_start} kB -> max {rss_max} kB; flooder wrote "
             f"{pumps[0].written / 1e6:.1f} MB (closed by broker: {pumps[0].closed}), "
             f"feeder wrote {pumps[1].written / 1e6:.1f} MB")
    print(stats)
    assert b.running, "broker died"
    assert rss_max < 200 * 1024, stats
    assert_broker_healthy(b, V311)


# ------------------------------------------------------- other limits

def test_client_topic_alias_above_maximum_disconnects(broker_factory):
    b = broker_factory(topic_alias_maximum=2)
    topic = unique("ta/t")
    with raw.RawClient(b.host, b.port) as c:
        ack = c.connect(unique("ta"), version=raw.V5)
        assert ack.props.get(raw.PROP_TOPIC_ALIAS_MAXIMUM) == 2, ack.props
        c.send(raw.publish(topic, b"ok", qos=1, packet_id=1, version=raw.V5,
                           props=[(raw.PROP_TOPIC_ALIAS, 2)]))
        ack = c.read_packet()
        assert ack.type == raw.PUBACK and raw.ack_reason(ack) < 0x80, ack
        c.send(raw.publish(topic, b"too-far", qos=1, packet_id=2, version=raw.V5,
                           props=[(raw.PROP_TOPIC_ALIAS, 3)]))
        before_close = c.wait_closed(timeout=5.0)
    assert [(p.type, raw.disconnect_reason(p)) for p in before_close] == [
        (raw.DISCONNECT, 0x94)], before_close  # Topic Alias invalid [MQTT-3.3.2-9]
    assert_broker_healthy(b, V5)


@pytest.mark.parametrize("requested", [100, 0])
def test_max_keepalive_is_imposed_with_server_keep_alive(broker_factory, broker_kind, requested):
    b = broker_factory(max_keepalive=10)
    with raw.RawClient(b.host, b.port) as c:
        ack = c.connect(unique("mka"), version=raw.V5, keepalive=requested)
        assert ack.code == 0, ack
        got = ack.props.get(raw.PROP_SERVER_KEEP_ALIVE)
    assert got == 10, f"keepalive {requested} requested, Server Keep Alive {got}"


@pytest.mark.millwright_only(reason=(
    "mosquitto 2.0.11 checks keepalives only every few seconds"))
def test_max_keepalive_is_enforced_for_a_client_asking_for_none(broker_factory):
    b = broker_factory(max_keepalive=1)
    with raw.RawClient(b.host, b.port) as c:
        ack = c.connect(unique("mka0"), version=raw.V5, keepalive=0)
        assert ack.props.get(raw.PROP_SERVER_KEEP_ALIVE) == 1, ack.props
        start = time.monotonic()
        before_close = c.wait_closed(timeout=4.0)
        elapsed = time.monotonic() - start
    assert [raw.disconnect_reason(p) for p in before_close] == [raw.RC_KEEP_ALIVE_TIMEOUT]
    assert 1.0 <= elapsed <= 3.0, f"closed after {elapsed:.2f}s"


@pytest.mark.millwright_only(reason=(
    "mosquitto 2.0.11 acknowledges and then drops messages for a full session queue"))
@pytest.mark.parametrize("version", VERSIONS)
def test_full_persistent_session_queue_refuses_instead_of_dropping(broker_factory, clients,
                                                                   version):
    """docs/configuration.md, max_queued_messages: a full persistent session
    gets PUBACK 0x97 (v5) or no PUBACK and a closed connection (v3.1.1), never
    an acknowledgement followed by a drop."""
    b = broker_factory(max_queued_messages=5)
    topic, cid = unique("fq/t"), unique("fq-sub")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=3600)
    s = clients(b, cid, version=V5)
    s.connect(properties=expiry)
    s.subscribe(topic, 1)
    s.disconnect()
    acked = []
    with raw.RawClient(b.host, b.port) as c:
        assert c.connect(unique("fq-pub"), version=PROTO[version]).code == 0
        for i in range(1, 9):
            c.send_tolerant(raw.publish(topic, f"m{i}".encode(), qos=1, packet_id=i,
                                        version=PROTO[version]))
            try:
                p = c.read_packet(timeout=2.0)
            except raw.ConnectionClosed:
                break
            assert p.type == raw.PUBACK and raw.ack_packet_id(p) == i, p
            if version == V5 and raw.ack_reason(p) >= 0x80:
                assert raw.ack_reason(p) == 0x97, p  # Quota exceeded
                continue
            acked.append(f"m{i}".encode())
        if version == V311:
            assert c.closed_by_peer, "v3.1.1 publisher to a full queue was not disconnected"
    assert acked == [f"m{i}".encode() for i in range(1, 6)], acked
    s2 = clients(b, cid, version=V5)
    assert s2.connect(clean_start=False, properties=expiry).session_present
    s2.messages.wait_for(len(acked))
    got = s2.messages.assert_stays(len(acked))
    assert [m.payload for m in got] == acked, "an acknowledged message was dropped"


def test_retain_unavailable(broker_factory, clients):
    b = broker_factory(retain_available=False)
    with raw.RawClient(b.host, b.port) as c:
        ack = c.connect(unique("nr"), version=raw.V5)
        assert ack.props.get(raw.PROP_RETAIN_AVAILABLE) == 0, ack.props
        c.send(raw.publish(unique("nr/t"), b"keep", qos=1, packet_id=1, retain=True,
                           version=raw.V5))
        before_close = c.wait_closed(timeout=5.0)
    # 0x9A Retain not supported [MQTT-3.3.1-?]
    assert [(p.type, raw.disconnect_reason(p)) for p in before_close] == [
        (raw.DISCONNECT, 0x9A)], before_close
    assert_broker_healthy(b, V5)


# ------------------------------------------------------- shared subscriptions

def _random_group(rng, length: int) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
    return "".join(rng.choice(alphabet) for _ in range(length))


# Eight filters that all match SHARE_TOPIC: one SUBSCRIBE per group creates
# eight (group, filter) entries of share-group bookkeeping.
SHARE_FILTERS = ["rss/#", "rss/+/a", "rss/x/a", "+/x/a", "+/+/+", "#", "+/#", "rss/x/#"]
SHARE_TOPIC = "rss/x/a"


@pytest.mark.millwright_only(reason="reads Millwright's RSS; mosquitto's memory is its own business")
def test_random_share_groups_leave_memory_flat(broker_factory, clients):
    """Subscribe / publish / unsubscribe with a few thousand random share
    groups (long names, eight filters each): the bookkeeping of a group is
    freed with its last member, so the broker's RSS after the loop stays
    near where it was after a warm-up. Kept per group, it would grow by
    about 32,000 entries of ~250 bytes (~8 MB)."""
    import random

    b = broker_factory()
    pid = b.proc.pid
    rng = random.Random(11)
    c = clients(b, version=V5)
    c.connect()
    received = 0

    def rounds(n: int) -> None:
        nonlocal received
        for _ in range(n):
            group = _random_group(rng, rng.randint(100, 128))
            subs = [(f"$share/{group}/{f}", 0) for f in SHARE_FILTERS]
            # The SUBACK also tells that the previous round's UNSUBSCRIBE,
            # sent earlier on this connection, was carried out.
            c.subscribe(subs)
            c.publish(SHARE_TOPIC, b"x", qos=0)
            received += len(SHARE_FILTERS)
            c.client.unsubscribe([s for s, _ in subs])

    rounds(500)  # warm-up: allocator pools, paho, the broker's tables
    c.messages.wait_for(received, timeout=60)
    rss_before = _rss_kb(pid)
    rounds(4000)
    c.messages.wait_for(received, timeout=120)
    c.subscribe("rss/barrier", 0)  # every UNSUBSCRIBE before it is done
    rss_after = _rss_kb(pid)
    stats = (f"broker RSS {rss_before} kB after the warm-up, {rss_after} kB after "
             f"4000 more groups x {len(SHARE_FILTERS)} filters "
             f"({received} messages delivered)")
    print(stats)
    assert len(c.messages) == received, stats
    assert rss_after - rss_before < 4 * 1024, stats
    assert_broker_healthy(b, V5)


@pytest.mark.millwright_only(reason="Millwright's share group name cap (mqtt.max_share_group_bytes)")
@pytest.mark.parametrize("version", VERSIONS)
def test_share_group_name_over_the_cap_is_refused(shared_broker, clients, version):
    """The default cap, mqtt.max_share_group_bytes = 128."""
    c = clients(shared_broker, version=version)
    c.connect()
    ok = c.subscribe(f"$share/{'g' * 128}/{unique('cap')}", 0)
    assert [int(getattr(x, "value", x)) for x in ok] == [0], ok
    codes = c.subscribe(f"$share/{'g' * 129}/{unique('cap')}", 0, expect_granted=False)
    # v5: 0x8F Topic Filter invalid; v3.1.1: 0x80 Failure.
    want = 0x8F if version == V5 else 0x80
    assert [int(getattr(x, "value", x)) for x in codes] == [want], codes
    assert_broker_healthy(shared_broker, version)
