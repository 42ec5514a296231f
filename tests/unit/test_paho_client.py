"""edgefleet.paho_client: paho without urllib.request's HTTP and email stack when it cannot use it, the real
module for everyone else, and paho's proxy support intact when PySocks is installed. Each case runs in
a fresh interpreter: what a process has imported is the thing under test."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, sys
    import edgefleet.session as session
    loaded = {name: name in sys.modules for name in ("urllib.request", "http.client", "email.message")}
    client = session.make_client("probe", "5")
    proxy = client._get_proxy()  # what paho reads from the environment (mqtt_proxy) before connecting
    import urllib.request
    print(json.dumps({"loaded": loaded, "proxy": proxy, "real_urlopen": callable(urllib.request.urlopen),
                      "real_module": type(urllib.request) is type(json)}))
""")


def probe(tmp_path: Path, *, with_socks: bool) -> dict:
    path = [str(REPO), str(REPO / "protos")]
    if with_socks:  # a stand-in for PySocks: paho then reads mqtt_proxy through urllib.request
        (tmp_path / "socks.py").write_text("HTTP, SOCKS4, SOCKS5 = 3, 1, 2\n")
        path.insert(0, str(tmp_path))
    env = {"PYTHONPATH": ":".join(path), "mqtt_proxy": "http://proxy.example:3128", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_without_pysocks_paho_leaves_the_http_and_email_stack_out(tmp_path: Path) -> None:
    got = probe(tmp_path, with_socks=False)
    assert got["loaded"] == {"urllib.request": False, "http.client": False, "email.message": False}
    assert got["proxy"] is None  # paho without PySocks never proxies: nothing was lost
    assert got["real_module"] and got["real_urlopen"]  # a later importer gets the real module


def test_with_pysocks_paho_is_imported_as_it_is_and_reads_the_proxy(tmp_path: Path) -> None:
    got = probe(tmp_path, with_socks=True)
    assert got["loaded"]["urllib.request"] is True
    assert got["proxy"] == {"proxy_type": 3, "proxy_addr": "proxy.example", "proxy_port": 3128}
