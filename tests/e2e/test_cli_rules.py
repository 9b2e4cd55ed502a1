"""The rule and alarm commands of the `millwright` CLI against a running
platform: `rule add` (and `--replace`), `list`, `get`, `disable`,
`enable`, `dry-run`, `traces`, `delete`; `alarm list`, `ack`, `clear`
on an alarm raised by a device's telemetry; exit codes of refusals
(3 not found, 5 conflict or rejected input)."""

from __future__ import annotations

import json

import pytest

from helpers import V5, MqttClient, wait_until
from mwplatform import _log_on_failure, platforms  # noqa: F401 (fixtures)

pytestmark = pytest.mark.millwright_only(reason="the rules engine and its CLI are Millwright's")


def ok(res) -> str:
    assert res.returncode == 0, f"exit {res.returncode}: {res.stderr}"
    return res.stdout


def test_rule_and_alarm_commands(platforms, tmp_path):
    p = platforms()
    name = "cli-hot"
    rule = {
        "name": name,
        "sql": "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 80",
        "actions": [{"type": "alarm", "alarm_type": "hot", "severity": "warning"}],
    }
    f = tmp_path / "rule.json"
    f.write_text(json.dumps(rule))
    assert f"saved rule {name}" in ok(p.cli("rule", "add", str(f)))
    # The same name again: a conflict.
    assert p.cli("rule", "add", str(f)).returncode == 5

    rule["sql"] = "SELECT temp FROM 'devices/+/telemetry' WHERE temp > 90"
    f.write_text(json.dumps(rule))
    assert f"saved rule {name}" in ok(p.cli("rule", "add", str(f), "--replace"))
    assert "temp > 90" in json.loads(ok(p.cli("rule", "get", name)))["sql"]

    listed = json.loads(ok(p.cli("rule", "list", "--output", "json")))
    assert [r["name"] for r in listed] == [name]
    assert "CLI-HOT" not in ok(p.cli("rule", "list")) and name in ok(p.cli("rule", "list"))

    assert ok(p.cli("rule", "disable", name)).strip() == f"disabled {name}"
    assert json.loads(ok(p.cli("rule", "get", name)))["enabled"] is False
    assert ok(p.cli("rule", "enable", name)).strip() == f"enabled {name}"
    assert json.loads(ok(p.cli("rule", "get", name)))["enabled"] is True

    dry = json.loads(ok(p.cli("rule", "dry-run", name, "--topic", "devices/m1/telemetry",
                              "--payload", '{"temp": 95}')))
    assert dry.get("matched") is True, dry
    dry = json.loads(ok(p.cli("rule", "dry-run", name, "--topic", "devices/m1/telemetry",
                              "--payload", '{"temp": 20}')))
    assert dry.get("matched") is False, dry

    # A device above 90: the rule raises an alarm.
    token = p.add_device("m1")
    d = MqttClient(p, "m1", version=V5, username="m1", password=token)
    try:
        d.connect()
        d.publish("devices/m1/telemetry", json.dumps({"temp": 95}), qos=1)

        def alarms(*args: str) -> list[dict]:
            return json.loads(ok(p.cli("alarm", "list", "--output", "json", *args)))

        wait_until(lambda: len(alarms("--device", "m1")) == 1, what="the alarm raised")
        [a] = alarms("--device", "m1")
        assert (a["type"], a["severity"], a["device_id"]) == ("hot", "warning", "m1"), a
        assert alarms("--device", "m2") == []
        assert json.loads(ok(p.cli("rule", "traces", name)))["items"], "no evaluation traced"

        assert ok(p.cli("alarm", "ack", a["id"])).strip() == f"acknowledged {a['id']}"
        assert ok(p.cli("alarm", "clear", a["id"])).strip() == f"cleared {a['id']}"
        assert alarms("--state", "active") == []
        assert p.cli("alarm", "ack", "no-such-alarm").returncode == 3
    finally:
        d.close()

    assert ok(p.cli("rule", "delete", name)).strip() == f"deleted {name}"
    res = p.cli("rule", "get", name)
    assert res.returncode == 3 and "404" in res.stderr, res
    # A file that is not JSON is a usage error.
    f.write_text("not json")
    assert p.cli("rule", "add", str(f)).returncode == 2
