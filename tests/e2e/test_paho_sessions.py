"""paho-mqtt: QoS round trips, sessions, takeover, expiry, wills."""

import time

import pytest

import rawmqtt
from helpers import ABSENCE_WAIT, V5, VERSIONS, PacketTypes, props, unique

SESSION_TAKEN_OVER = 0x8E


def connect_session(clients, broker, client_id, version, *, clean, expiry=300, **kw):
    """Connect a session-bearing client: v3.1.1 clean_session / v5 clean_start + expiry."""
    c = clients(broker, client_id, version=version, clean=clean, **kw)
    properties = props(PacketTypes.CONNECT, SessionExpiryInterval=expiry) if version == V5 else None
    conn = c.connect(clean_start=clean, properties=properties)
    return c, conn


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [1, 2])
def test_paho_round_trip(shared_broker, clients, version, qos):
    topic = unique("paho/rt")
    sub = clients(shared_broker, version=version)
    sub.connect()
    sub.subscribe(topic, qos)
    pub = clients(shared_broker, version=version)
    pub.connect()
    for i in range(5):
        pub.publish(topic, f"m{i}".encode(), qos=qos)
    msgs = sub.messages.wait_for(5)
    assert [m.payload for m in msgs] == [f"m{i}".encode() for i in range(5)]  # ordered
    assert {(m.topic, m.qos, m.retain) for m in msgs} == {(topic, qos, False)}
    sub.messages.assert_stays(5)  # exactly once, no duplicates


@pytest.mark.parametrize("version", VERSIONS)
def test_persistent_session_receives_qos1_published_while_offline(shared_broker, clients, version):
    cid = unique("persist")
    topic = unique("paho/offline")
    s1, conn = connect_session(clients, shared_broker, cid, version, clean=True if version == V5 else False)
    assert conn.session_present is False
    s1.subscribe(topic, 1)
    s1.disconnect()

    pub = clients(shared_broker, version=version)
    pub.connect()
    for i in range(5):
        pub.publish(topic, f"offline-{i}".encode(), qos=1)

    s2, conn = connect_session(clients, shared_broker, cid, version, clean=False)
    assert conn.session_present is True
    msgs = s2.messages.wait_for(5)
    assert [m.payload for m in msgs] == [f"offline-{i}".encode() for i in range(5)]
    assert all(m.qos == 1 and m.topic == topic for m in msgs)
    # the subscription itself is part of the session: live messages still flow
    pub.publish(topic, b"live", qos=1)
    assert s2.messages.wait_for(6)[-1].payload == b"live"


@pytest.mark.parametrize("version", VERSIONS)
def test_clean_start_discards_existing_session(shared_broker, clients, version):
    cid = unique("discard")
    topic = unique("paho/discard")
    s1, _ = connect_session(clients, shared_broker, cid, version, clean=False)
    s1.subscribe(topic, 1)
    s1.disconnect()
    pub = clients(shared_broker, version=version)
    pub.connect()
    pub.publish(topic, b"stale", qos=1)

    s2, conn = connect_session(clients, shared_broker, cid, version, clean=True)
    assert conn.session_present is False
    # old subscription is gone too: this live message must not arrive
    pub.publish(topic, b"after", qos=1)
    s2.messages.assert_stays(0)


def test_session_expires_after_session_expiry_interval(shared_broker, clients):
    short_id, long_id = unique("exp-short"), unique("exp-long")
    short, _ = connect_session(clients, shared_broker, short_id, V5, clean=True, expiry=1)
    long_, _ = connect_session(clients, shared_broker, long_id, V5, clean=True, expiry=30)
    short.disconnect()
    long_.disconnect()
    # The one unavoidable fixed wait: reconnecting earlier would resume (and so
    # prolong) the session we are waiting to expire. 1 s expiry + 1 s slack.
    time.sleep(2.0)
    _, conn = connect_session(clients, shared_broker, short_id, V5, clean=False, expiry=0)
    assert conn.session_present is False, "session with 1 s expiry still present after 2 s"
    _, conn = connect_session(clients, shared_broker, long_id, V5, clean=False, expiry=0)
    assert conn.session_present is True, "session with 30 s expiry vanished after 2 s"


def test_session_expiry_zero_ends_session_at_disconnect(shared_broker, clients):
    cid = unique("exp-zero")
    s1, _ = connect_session(clients, shared_broker, cid, V5, clean=True, expiry=0)
    s1.disconnect()
    _, conn = connect_session(clients, shared_broker, cid, V5, clean=False, expiry=0)
    assert conn.session_present is False


@pytest.mark.parametrize("version", VERSIONS)
def test_session_takeover_disconnects_first_client(shared_broker, clients, version):
    cid = unique("takeover")
    topic = unique("paho/takeover")
    proto = rawmqtt.V5 if version == V5 else rawmqtt.V311
    # the first client is raw so we can see exactly what the broker sends it
    with rawmqtt.RawClient(shared_broker.host, shared_broker.port) as first:
        assert first.connect(cid, version=proto).code == 0
        second = clients(shared_broker, cid, version=version)
        second.connect()
        before_close = first.wait_closed()
    if version == V5:
        # [MQTT-3.1.4-3]: the server sends DISCONNECT 0x8E (Session taken over)
        # and MUST close the connection. mosquitto 2.0.11 only closes it, so a
        # bare close is accepted; any DISCONNECT sent must carry 0x8E.
        assert all(p.type == rawmqtt.DISCONNECT for p in before_close), before_close
        assert [rawmqtt.disconnect_reason(p) for p in before_close] in ([], [SESSION_TAKEN_OVER])
    else:
        assert before_close == []  # a v3.1.1 server never sends DISCONNECT
    # the new connection is fully usable
    second.subscribe(topic, 1)
    second.publish(topic, b"mine", qos=1)
    assert second.messages.wait_for(1)[0].payload == b"mine"
    assert second.is_connected


@pytest.mark.parametrize("version", VERSIONS)
def test_session_takeover_of_paho_client(shared_broker, clients, version):
    cid = unique("takeover-paho")
    first = clients(shared_broker, cid, version=version)
    first.connect()
    second = clients(shared_broker, cid, version=version)
    second.connect()
    info = first.wait_disconnected()
    if version == V5:
        # 0x8E if the broker sent DISCONNECT; paho reports a bare close as
        # 0x80 "Unspecified error" (mosquitto 2.0.11, see test above)
        assert info.rc in (SESSION_TAKEN_OVER, 0x80), info.reason_code
    assert second.is_connected


def test_message_expiry_drops_queued_message(shared_broker, clients):
    cid = unique("msgexp")
    topic = unique("paho/msgexp")
    s1, _ = connect_session(clients, shared_broker, cid, V5, clean=True, expiry=60)
    s1.subscribe(topic, 1)
    s1.disconnect()

    pub = clients(shared_broker, version=V5)
    pub.connect()
    pub.publish(topic, b"short-lived", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(topic, b"long-lived", qos=1,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    pub.publish(topic, b"immortal", qos=1)
    time.sleep(2.0)  # let the 1 s message expire while the session is offline

    s2, conn = connect_session(clients, shared_broker, cid, V5, clean=False, expiry=60)
    assert conn.session_present is True
    s2.messages.wait_for_payload(b"immortal")
    msgs = s2.messages.assert_stays(2, wait=ABSENCE_WAIT)
    assert [m.payload for m in msgs] == [b"long-lived", b"immortal"]
    # forwarded expiry is reduced by the time spent waiting [MQTT-3.3.2-6]
    remaining = msgs[0].properties.MessageExpiryInterval
    assert 1 <= remaining <= 59, remaining
    assert not hasattr(msgs[1].properties, "MessageExpiryInterval")


def test_will_delay_not_sent_if_client_reconnects_in_time(shared_broker, clients):
    cid = unique("willdelay")
    will_topic = unique("paho/willdelay")
    watcher = clients(shared_broker, version=V5)
    watcher.connect()
    watcher.subscribe(will_topic, 1)

    c = clients(shared_broker, cid, version=V5)
    c.will_set(will_topic, b"gone", qos=1,
               properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=2))
    c.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=10))
    c.drop()  # network loss: will is armed, delayed by 2 s

    _, conn = connect_session(clients, shared_broker, cid, V5, clean=False, expiry=10)
    assert conn.session_present is True
    # wait past the will delay: the will must never be published
    watcher.messages.assert_stays(0, wait=3.0)


def test_will_delay_sent_after_delay_when_client_stays_away(shared_broker, clients):
    cid = unique("willdelay2")
    will_topic = unique("paho/willdelay2")
    watcher = clients(shared_broker, version=V5)
    watcher.connect()
    watcher.subscribe(will_topic, 1)

    c = clients(shared_broker, cid, version=V5)
    c.will_set(will_topic, b"gone", qos=1,
               properties=props(PacketTypes.WILLMESSAGE, WillDelayInterval=1))
    c.connect(clean_start=True, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=10))
    dropped_at = time.monotonic()
    c.drop()
    msgs = watcher.messages.wait_for(1, timeout=5.0)
    elapsed = time.monotonic() - dropped_at
    assert msgs[0].payload == b"gone" and msgs[0].topic == will_topic
    assert elapsed >= 0.9, f"will published after {elapsed:.2f}s, before its 1 s delay"


@pytest.mark.parametrize("version", VERSIONS)
def test_will_sent_immediately_on_network_loss(shared_broker, clients, version):
    will_topic = unique("paho/will")
    watcher = clients(shared_broker, version=version)
    watcher.connect()
    watcher.subscribe(will_topic, 1)
    c = clients(shared_broker, version=version)
    c.will_set(will_topic, b"bye", qos=1, retain=False)
    c.connect()
    c.drop()
    msgs = watcher.messages.wait_for(1)
    assert (msgs[0].topic, msgs[0].payload, msgs[0].qos) == (will_topic, b"bye", 1)
