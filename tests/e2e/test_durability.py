"""Persistence across broker restarts.

Graceful restart (SIGTERM) must keep sessions, queued QoS 1 messages and
retained messages on every broker. Surviving kill -9 needs every acknowledged
message to be durable before the ack; mosquitto only saves on shutdown or
autosave, so those tests are millwright_only.
"""

import pytest

from helpers import V5, V311, VERSIONS, PacketTypes, props, unique


def connect_persistent(clients, broker, client_id, version, clean):
    c = clients(broker, client_id, version=version, clean=clean)
    properties = props(PacketTypes.CONNECT, SessionExpiryInterval=3600) if version == V5 else None
    return c, c.connect(clean_start=clean, properties=properties)


def prepare_offline_session(clients, broker, version, n):
    """Persistent session subscribed at QoS 1, then offline; n acknowledged
    QoS 1 messages queued for it, plus one retained message on another topic."""
    cid, topic, retained_topic = unique("durable"), unique("dur/q"), unique("dur/retained")
    s, conn = connect_persistent(clients, broker, cid, version, clean=(version == V5))
    assert conn.session_present is False
    s.subscribe(topic, 1)
    s.disconnect()
    pub = clients(broker, version=version)
    pub.connect()
    sent = [f"m{i:03d}".encode() for i in range(n)]
    for p in sent:
        pub.publish(topic, p, qos=1)  # returns once PUBACK arrived
    pub.publish(retained_topic, b"keep-me", qos=1, retain=True)
    pub.disconnect()
    return cid, topic, retained_topic, sent


def assert_session_restored(clients, broker, version, cid, topic, sent):
    s, conn = connect_persistent(clients, broker, cid, version, clean=False)
    assert conn.session_present is True, "session lost across restart"
    msgs = s.messages.wait_until(
        lambda ms: {m.payload for m in ms} >= set(sent), what=f"all {len(sent)} queued messages")
    missing = set(sent) - {m.payload for m in msgs}
    assert not missing, f"acknowledged messages lost: {sorted(missing)}"
    assert all(m.topic == topic and m.qos == 1 for m in msgs)
    # the subscription survived too: live traffic still reaches the session
    live = clients(broker, version=version)
    live.connect()
    live.publish(topic, b"live", qos=1)
    s.messages.wait_for_payload(b"live")


def assert_retained(clients, broker, version, retained_topic):
    sub = clients(broker, version=version)
    sub.connect()
    sub.subscribe(retained_topic, 1)
    [m] = sub.messages.wait_for(1)
    assert (m.payload, m.retain) == (b"keep-me", True)


@pytest.mark.parametrize("version", [
    V311,
    pytest.param(V5, marks=pytest.mark.millwright_only(reason=(
        "mosquitto 2.0.11 does not restore MQTT 5 sessions from its persistence "
        "file (v3.1.1 sessions are restored)"))),
])
def test_session_queue_and_retained_survive_graceful_restart(broker, clients, version):
    cid, topic, retained_topic, sent = prepare_offline_session(clients, broker, version, 10)
    assert broker.stop() is not None
    broker.start()
    assert_session_restored(clients, broker, version, cid, topic, sent)
    assert_retained(clients, broker, version, retained_topic)


@pytest.mark.millwright_only
@pytest.mark.parametrize("version", VERSIONS)
def test_acknowledged_qos1_messages_survive_kill9(broker, clients, version):
    cid, topic, _, sent = prepare_offline_session(clients, broker, version, 50)
    broker.kill9()
    broker.restart()
    assert_session_restored(clients, broker, version, cid, topic, sent)


@pytest.mark.millwright_only
def test_retained_message_survives_kill9(broker, clients):
    topic = unique("dur/retained-k9")
    pub = clients(broker, version=V311)
    pub.connect()
    pub.publish(topic, b"keep-me", qos=1, retain=True)
    broker.kill9()
    broker.restart()
    assert_retained(clients, broker, V311, topic)


@pytest.mark.millwright_only
def test_retained_delete_survives_kill9(broker, clients):
    topic = unique("dur/retained-del")
    pub = clients(broker, version=V311)
    pub.connect()
    pub.publish(topic, b"old", qos=1, retain=True)
    pub.publish(topic, b"", qos=1, retain=True)  # acknowledged delete
    broker.kill9()
    broker.restart()
    sub = clients(broker, version=V311)
    sub.connect()
    sub.subscribe(topic, 1)
    sub.messages.assert_stays(0)
