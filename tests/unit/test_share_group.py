"""mqtt.share_group = "": plain subscriptions for a broker without shared subscriptions (the demo's amqtt)."""
from __future__ import annotations

from coordinator.config import load_config
from coordinator.link import CoordinatorLink
from edgefleet import topics


def test_an_empty_group_is_a_plain_subscription():
    assert topics.shared("ef/v1/dev/+/event", "") == "ef/v1/dev/+/event"
    assert topics.shared("ef/v1/dev/+/event", "blue") == "$share/blue/ef/v1/dev/+/event"


def test_the_coordinator_subscribes_without_share_when_the_group_is_empty(tmp_path):
    # From the environment, as `edgectl demo` sets it: an empty value must stay empty, not fall back.
    cfg = load_config(environ={"EDGEFLEET_DATA_DIR": str(tmp_path), "EDGEFLEET_MQTT__SHARE_GROUP": ""})
    assert cfg.mqtt.share_group == ""
    subs = dict(CoordinatorLink(cfg.mqtt, lambda topic, payload: None).subscriptions())
    assert not any(f.startswith("$share/") for f in subs), subs
    assert set(subs) == {topics.all_devices(k) for k in (topics.STATUS, topics.HELLO, topics.EVENT, topics.TELEMETRY, topics.BLOB_REQ)}
    assert set(subs.values()) == {1}


def test_the_default_group_still_shares(tmp_path):
    cfg = load_config(environ={"EDGEFLEET_DATA_DIR": str(tmp_path)})
    subs = dict(CoordinatorLink(cfg.mqtt, lambda topic, payload: None).subscriptions())
    assert subs[topics.shared(topics.all_devices(topics.TELEMETRY), "coordinators")] == 1
    assert topics.all_devices(topics.TELEMETRY) not in subs
