"""MQTT over WebSocket (path /mqtt), interoperating with plain TCP clients."""

import pytest

from helpers import V5, VERSIONS, unique


@pytest.fixture
def ws_broker(shared_broker):
    if shared_broker.ws_port is None:
        pytest.skip("broker has no websocket listener")
    return shared_broker


@pytest.mark.parametrize("version", VERSIONS)
def test_websocket_publish_and_subscribe(ws_broker, clients, version):
    topic = unique("ws/t")
    ws_sub = clients(ws_broker, version=version, transport="websockets")
    ws_sub.connect()
    ws_sub.subscribe(topic, 2)
    tcp_sub = clients(ws_broker, version=version)
    tcp_sub.connect()
    tcp_sub.subscribe(topic, 2)

    ws_pub = clients(ws_broker, version=version, transport="websockets")
    ws_pub.connect()
    tcp_pub = clients(ws_broker, version=version)
    tcp_pub.connect()

    ws_pub.publish(topic, b"from-ws", qos=1)
    tcp_pub.publish(topic, b"from-tcp", qos=2)
    for sub in (ws_sub, tcp_sub):
        msgs = sub.messages.wait_for(2)
        assert [(m.topic, m.payload, m.qos) for m in msgs] == [
            (topic, b"from-ws", 1), (topic, b"from-tcp", 2)]


def test_websocket_large_payload_and_retained(ws_broker, clients):
    version = V5  # framing does not depend on the MQTT version
    topic = unique("ws/big")
    # > 64 KiB forces the 64-bit websocket length encoding both ways. Kept
    # modest because paho's websocket reader is slow (~1.8 s for 70 kB) and
    # gives up on much larger frames within our timeouts.
    payload = bytes(range(256)) * 275  # 70,400 bytes
    pub = clients(ws_broker, version=version, transport="websockets")
    pub.connect()
    pub.publish(topic, payload, qos=1, retain=True)

    sub = clients(ws_broker, version=version, transport="websockets")
    sub.connect()
    sub.subscribe(topic, 1)
    [m] = sub.messages.wait_for(1, timeout=10.0)
    assert m.payload == payload and m.retain
    pub.publish(topic, b"", qos=1, retain=True)  # clean up
