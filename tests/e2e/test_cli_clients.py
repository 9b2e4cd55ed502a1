"""Interop with the stock mosquitto_pub / mosquitto_sub clients, v3.1.1 and v5."""

import pytest

from helpers import VERSIONS, CliMessage, MosquittoSub, mosquitto_pub, unique

pytestmark = pytest.mark.parametrize("version", VERSIONS)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_cli_publish_is_delivered_at_requested_qos(shared_broker, version, qos):
    topic = unique("cli/qos")
    with MosquittoSub(shared_broker, topic, version=version, qos=qos, count=1) as sub:
        sub.wait_subscribed()
        mosquitto_pub(shared_broker, topic, "hello", qos=qos, version=version)
        msgs = sub.wait_for(1)
        assert sub.wait_exit() == 0
    assert msgs == [CliMessage(topic, qos, False, "hello")]


def test_cli_delivery_qos_is_downgraded_to_subscription_qos(shared_broker, version):
    topic = unique("cli/downgrade")
    with MosquittoSub(shared_broker, topic, version=version, qos=0, count=1) as sub:
        sub.wait_subscribed()
        mosquitto_pub(shared_broker, topic, "x", qos=2, version=version)
        msgs = sub.wait_for(1)
    assert msgs == [CliMessage(topic, 0, False, "x")]


def _retained(broker, topic, version):
    """What a new subscriber gets first: the retained message, or a live marker."""
    with MosquittoSub(broker, topic, version=version, count=1) as sub:
        sub.wait_subscribed()
        if not sub.messages:
            # any retained message is sent right after SUBACK, so a live
            # message published now can only arrive after it
            mosquitto_pub(broker, topic, "live-marker", qos=1, version=version)
        [first] = sub.wait_for(1)
        sub.wait_exit()
    return first


def test_cli_retained_set_replace_delete(broker, version):
    topic = unique("cli/retained")

    mosquitto_pub(broker, topic, "first", qos=1, retain=True, version=version)
    assert _retained(broker, topic, version) == CliMessage(topic, 0, True, "first")

    mosquitto_pub(broker, topic, "second", qos=1, retain=True, version=version)
    assert _retained(broker, topic, version) == CliMessage(topic, 0, True, "second")

    # an empty retained payload deletes the retained message
    mosquitto_pub(broker, topic, null=True, qos=1, retain=True, version=version)
    assert _retained(broker, topic, version) == CliMessage(topic, 0, False, "live-marker")


def test_cli_will_published_when_client_is_killed(shared_broker, version):
    will_topic = unique("cli/will")
    with MosquittoSub(shared_broker, will_topic, version=version, count=1) as watcher:
        watcher.wait_subscribed()
        dying = MosquittoSub(shared_broker, unique("cli/idle"), version=version, wait_s=60,
                             extra=["--will-topic", will_topic, "--will-payload", "gone",
                                    "--will-qos", "1"])
        with dying:
            dying.wait_subscribed()
            assert watcher.messages == []  # will is not sent while the client lives
            dying.kill9()
        msgs = watcher.wait_for(1)
    assert msgs == [CliMessage(will_topic, 0, False, "gone")]


def test_cli_will_not_published_on_clean_disconnect(shared_broker, version):
    will_topic = unique("cli/will-clean")
    trigger = unique("cli/trigger")
    with MosquittoSub(shared_broker, will_topic, version=version) as watcher:
        watcher.wait_subscribed()
        # this client exits cleanly (sends DISCONNECT) after one message
        leaving = MosquittoSub(shared_broker, trigger, version=version, count=1,
                               extra=["--will-topic", will_topic, "--will-payload", "gone"])
        with leaving:
            leaving.wait_subscribed()
            mosquitto_pub(shared_broker, trigger, "bye", qos=1, version=version)
            assert leaving.wait_exit() == 0
        mosquitto_pub(shared_broker, will_topic, "marker", qos=1, version=version)
        msgs = watcher.wait_for_payload("marker")
    assert [m.payload for m in msgs] == ["marker"]


def test_cli_single_level_wildcard(shared_broker, version):
    base = unique("cli/plus")
    expected = {f"{base}/x/c", f"{base}//c", f"{base}/end/c"}
    with MosquittoSub(shared_broker, f"{base}/+/c", version=version) as sub:
        sub.wait_subscribed()
        for topic in [f"{base}/x/c", f"{base}/x/y/c", f"{base}/c", f"{base}/x/d",
                      f"{base}//c", f"{base}x/x/c"]:
            mosquitto_pub(shared_broker, topic, topic, qos=1, version=version)
        mosquitto_pub(shared_broker, f"{base}/end/c", "end", qos=1, version=version)
        msgs = sub.wait_for_payload("end")
    assert {m.topic for m in msgs} == expected
    assert len(msgs) == len(expected)


def test_cli_multi_level_wildcard(shared_broker, version):
    base = unique("cli/hash")
    expected = {base, f"{base}/a", f"{base}/a/b/c", f"{base}/end"}
    with MosquittoSub(shared_broker, f"{base}/#", version=version) as sub:
        sub.wait_subscribed()
        for topic in [base, f"{base}/a", f"{base}/a/b/c", f"{base}x", f"{base}x/a",
                      f"other/{base}"]:
            mosquitto_pub(shared_broker, topic, topic, qos=1, version=version)
        mosquitto_pub(shared_broker, f"{base}/end", "end", qos=1, version=version)
        msgs = sub.wait_for_payload("end")
    # "a/#" also matches the parent level "a" [MQTT-4.7.1-2]
    assert {m.topic for m in msgs} == expected
    assert len(msgs) == len(expected)


def test_cli_hash_does_not_match_dollar_topics(broker, version):
    marker_topic = unique("cli/sysmarker")
    with MosquittoSub(broker, ["#", "+/#"], version=version) as everything, \
            MosquittoSub(broker, "$SYS/#", version=version) as sys_sub:
        everything.wait_subscribed()
        sys_sub.wait_subscribed()
        # Give $SYS traffic (if the broker has any) a chance to flow; a broker
        # without $SYS topics simply makes this a bounded 1.5 s wait.
        try:
            sys_sub.wait_for(1, timeout=1.5)
        except AssertionError:
            pass
        # A client-published $-topic must not match wildcards either (the
        # broker may also refuse it; both are fine).
        mosquitto_pub(broker, "$e2e/private", "dollar", qos=0, version=version, check=False)
        mosquitto_pub(broker, marker_topic, "marker", qos=1, version=version)
        msgs = everything.wait_for_payload("marker")
    dollar = [m.topic for m in msgs if m.topic.startswith("$")]
    assert dollar == [], f"'#' / '+/#' matched topics starting with '$': {dollar}"
