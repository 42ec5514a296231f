from __future__ import annotations

import pytest

from coordinator.config import ConfigError, load_config


def test_defaults_and_sqlite_store(tmp_path):
    cfg = load_config(environ={"EDGEFLEET_DATA_DIR": str(tmp_path)})
    assert cfg.store_url == f"sqlite:///{tmp_path / 'edgefleet.db'}"
    assert cfg.mqtt.protocol == "5"


def test_file_then_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[mqtt]\nprotocol = "3.1.1"\nkeepalive_s = 20\n[store]\nurl = "sqlite:///x.db"\n')
    cfg = load_config(f, environ={"EDGEFLEET_STORE__URL": "postgresql+psycopg://h/test", "EDGEFLEET_TOKEN": "belongs-to-edgectl"})
    assert cfg.mqtt.protocol == "3.1.1" and cfg.mqtt.keepalive_s == 20
    assert cfg.store_url == "postgresql+psycopg://h/test"


@pytest.mark.parametrize(
    "text, env, expected",
    [
        ("[mqtt]\nkeepalive = 3\n", {}, "unknown key 'mqtt.keepalive'"),
        ("colour = 1\n", {}, "unknown key 'colour'"),
        ("[mqtt]\nkeepalive_s = 'soon'\n", {}, "'mqtt.keepalive_s'"),
        ("[mqtt]\nprotocol = '4'\n", {}, "'mqtt.protocol'"),
        ("[store]\nurl = 'mysql://x'\n", {}, "'store.url'"),
        ("", {"EDGEFLEET_MQTT__NOPE": "1"}, "unknown key 'mqtt.nope'"),
        ("", {"EDGEFLEET_NOSECTION__URL": "1"}, "unknown config section 'nosection'"),
        ("[mqtt\n", {}, "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path, text, env, expected):
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(f, environ=env)
    assert expected in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", environ={})
