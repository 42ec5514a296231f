"""How many telemetry reports per second the coordinator stores, with zero loss, against a raw paho subscriber.

    python bench/ingest.py                          # 20,000 reports from 200 devices, SQLite in a temp dir
    python bench/ingest.py --modes drain --messages 60000 --devices 1000 --store postgresql+psycopg://postgres@127.0.0.1/scratch

One private mosquitto (no queue limit, so nothing is lost to the broker) and one stream: --messages
envelope-wrapped Telemetry reports (one model with a full latency histogram, as the agent sends them,
about 1.4 KB each) from --devices registered device ids, published at QoS 1 as fast as the broker takes
them by a separate process that writes pre-built MQTT packets (it stands in for devices on other machines,
so it takes almost no CPU from the receivers). Each pass of the stream is received three times, one
receiver after the other:

  raw       a paho subscriber on a shared subscription, as the coordinator's, that only counts messages;
  link      the coordinator's CoordinatorLink (paho, worker thread) and Ingest (decode, check) with a
            telemetry handler that only counts: the MQTT side's share, before any telemetry work;
  ingest    the coordinator's whole path in this process: CoordinatorLink -> Ingest -> TelemetryService
            (validate, batch writer, SQLite WAL), counted when committed.

Two modes (both by default):

  drain     the receiver's persistent session is offline while the whole stream is published and queued by
            the broker; then it connects and works the backlog off alone: its sustained capacity, as on a
            coordinator host whose devices are other machines;
  live      the stream is published while the receiver works.

Each rate is (messages - 1) / (last - first), first = the first message's arrival, last = the last
message's receipt (raw) or commit (ingest). Loss is checked by counting distinct message ids in the store.
CPU per message is this process's CPU time (all threads) over the pass, plus the telemetry process's
and the broker's (in drain: delivering only; in live: receiving the publishes too): on two cores the
receiver, its telemetry process and the broker share the machine, so their sum bounds the rate. Targets (issue 5): ingest >= 0.5x
raw and >= 5,000 msg/s on the 2-core CI machine. Other processes on the machine move these figures a
lot: compare runs made on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGET_RATIO = 0.5
TARGET_RATE = 5000.0
BROKER_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 1000
set_tcp_nodelay true
"""


# ---------------------------------------------------------------- the stream


def make_stream(path: Path, device_ids: list[str], messages: int) -> None:
    """Write (topic, payload) records: realistic reports, windows ending in the last few minutes."""
    from agent.telemetry.histogram import LatencyHistogram
    from edgefleet import envelope, topics
    from edgefleet.v1 import telemetry_pb2

    now = datetime.now(timezone.utc)
    base = LatencyHistogram()
    for ms in (0.8, 0.9, 1.0, 1.1, 1.2, 1.5, 2.0, 3.5):
        base.observe(ms)
    hist = base.to_proto()
    with open(path, "wb") as out:
        for i in range(messages):
            device = device_ids[i % len(device_ids)]
            end = now - timedelta(seconds=10 * (messages - i) / len(device_ids))
            t = telemetry_pb2.Telemetry(sequence=i // len(device_ids))
            t.window_start.FromDatetime(end - timedelta(seconds=10))
            t.window_end.FromDatetime(end)
            t.system.CopyFrom(telemetry_pb2.SystemTelemetry(cpu_percent=7.5, rss_bytes=61_000_000, memory_available_bytes=1 << 30, storage_free_bytes=1 << 34))
            t.models.add(
                model="mobilenet", version="7", variant_id="int8", requests=1000 + i % 50, errors=i % 3, latency=hist,
                p50_ms=base.percentile(50), p95_ms=base.percentile(95), p99_ms=base.percentile(99), inferences_per_s=100.0,
                power=telemetry_pb2.PowerFigures(source="estimate", avg_watts=3.2, energy_per_inference_mj=31.5),
                accuracy=telemetry_pb2.AccuracyFigures(golden_metric=0.91, golden_count=256, online_metric=0.88, online_count=12, mean_confidence=0.83),
                drift=telemetry_pb2.DriftFigures(method="psi", max_score=0.07, per_feature=[0.01, 0.07, 0.02], samples=1000),
            )
            topic = topics.telemetry(device).encode()
            payload = envelope.encode(device, telemetry=t)
            out.write(struct.pack("<HI", len(topic), len(payload)) + topic + payload)


def read_stream(path: Path) -> list[tuple[str, bytes]]:
    data = path.read_bytes()
    out, at = [], 0
    while at < len(data):
        tlen, plen = struct.unpack_from("<HI", data, at)
        at += 6
        topic = data[at : at + tlen].decode()
        at += tlen
        out.append((topic, data[at : at + plen]))
        at += plen
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


def _text(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def publisher_main(port: int, stream: Path) -> None:
    """The publishing process: a minimal MQTT 3.1.1 client that writes pre-built QoS 1 PUBLISH packets.

    It stands in for devices on other machines, so it must cost this machine as little CPU as possible: a
    Python MQTT client publishing at QoS 1 takes about as much CPU per message as the receivers being
    measured and would halve what they get on two cores. The broker acknowledges every PUBLISH (PUBACK);
    a reader thread counts them, and the run ends when all are acknowledged.
    """
    import socket

    records = read_stream(stream)
    packets = []
    for i, (topic, payload) in enumerate(records):
        packet_id = i % 65535 + 1  # the broker acks QoS 1 at once: an id is free long before it comes round again
        packets.append(_packet(0x32, _text(topic) + struct.pack("!H", packet_id) + payload))
    # CONNECT: protocol "MQTT" level 4, clean session, keepalive 0 (no pings needed), a client id.
    connect = _packet(0x10, _text("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0) + _text(f"bench-pub-{uuid.uuid4().hex[:8]}"))
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(connect)
    connack = sock.recv(4)
    if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
        sys.exit(f"publisher: broker refused the connection: {connack!r}")
    acked = 0
    all_acked = threading.Event()

    def read_acks() -> None:
        nonlocal acked
        pending = b""
        while acked < len(packets):
            chunk = sock.recv(65536)
            if not chunk:
                return
            pending += chunk
            whole = len(pending) // 4 * 4  # PUBACK is 4 bytes: 0x40 0x02 id id
            acked += whole // 4
            pending = pending[whole:]
        all_acked.set()

    reader = threading.Thread(target=read_acks, daemon=True)
    reader.start()
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    for at in range(0, len(packets), 256):
        sock.sendall(b"".join(packets[at : at + 256]))
    if not all_acked.wait(120):
        sys.exit(f"publisher: only {acked} of {len(packets)} acknowledged")
    elapsed = time.perf_counter() - started
    sock.sendall(bytes([0xE0, 0]))  # DISCONNECT
    sock.close()
    print(f"published {len(records)} {elapsed:.6f}", flush=True)


class Publisher:
    def __init__(self, port: int, stream: Path):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--publisher", str(port), str(stream)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            raise SystemExit(f"bench: publisher did not start: {line!r}")

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> float:
        """Messages per second the publisher achieved."""
        line = self.proc.stdout.readline().split()
        self.proc.wait(30)
        return int(line[1]) / float(line[2])


# ---------------------------------------------------------------- the two receivers


class RawReceiver:
    """A paho subscriber on the coordinators' shared subscription that only counts (persistent session)."""

    def __init__(self, port: int, messages: int):
        self.port, self.messages = port, messages
        self.count = 0
        self.first = self.last = 0.0
        self.done = threading.Event()
        self.client = None

    def connect(self) -> None:
        from coordinator.config import MqttConfig
        from edgefleet import session, topics

        subscribed = threading.Event()

        def on_message(client, userdata, msg):
            self.count += 1
            if self.count == 1:
                self.first = time.perf_counter()
            if self.count == self.messages:
                self.last = time.perf_counter()
                self.done.set()

        client = session.make_client("bench-raw", "5")
        client.on_message = on_message
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_connect = lambda c, *a: c.subscribe(topics.shared(topics.all_devices(topics.TELEMETRY), "coordinators"), qos=1)
        # The same in-flight window as the coordinator's link asks for (it acknowledges at once, though).
        session.connect_async(
            client, session.parse_broker_url(f"mqtt://127.0.0.1:{self.port}"), keepalive=30, session_expiry_s=3600, receive_maximum=MqttConfig().receive_maximum
        )
        client.loop_start()
        if not subscribed.wait(10):
            raise SystemExit("bench: raw subscriber could not subscribe")
        self.client = client

    def disconnect(self, final: bool = False) -> None:
        self.client.disconnect(properties=_end_session() if final else None)
        self.client.loop_stop()

    def result(self) -> str:
        return f"{self.count} messages received"


class IngestReceiver:
    """The coordinator's telemetry path: CoordinatorLink -> Ingest -> TelemetryService, on one store, with the
    telemetry work in a child process and acknowledgement after the commit (the coordinator's defaults)."""

    process = True
    manual_ack = True

    def __init__(self, port: int, messages: int, store_url: str, args):
        from coordinator.config import TelemetryConfig
        from coordinator.ingest import Ingest
        from coordinator.metrics import CoordinatorMetrics
        from coordinator.store.db import Store
        from coordinator.store.devices import DeviceRegistry
        from coordinator.telemetry.service import TelemetryService
        from edgefleet import topics

        self.port, self.messages = port, messages
        self.receive_maximum = args.receive_maximum
        self.store = Store(store_url)
        self._empty_telemetry_tables()
        self.metrics = CoordinatorMetrics()
        self.ingest = Ingest(DeviceRegistry(self.store), self.metrics)
        cfg = TelemetryConfig(batch_size=args.batch_size, flush_interval_s=args.flush_interval)
        self.service = TelemetryService(self.store, self.ingest.registry, self.metrics, cfg, limiter=self.ingest.limiter, process=self.process)
        self.service.attach(self.ingest)
        self.first = self.last = 0.0
        self.stored = 0
        self.done = threading.Event()

        def counted(n):
            self.stored = n
            if n >= self.messages and not self.done.is_set():
                self.last = time.perf_counter()
                self.done.set()

        if self.service.remote is not None:
            # Final in the child process: committed (or dropped, which the loss check below would catch).
            self.service.remote.on_final = counted
        else:
            write_rows = self.service.writer.write_rows

            def counted_write(rows):
                n = write_rows(rows)
                counted(self.stored + n)
                return n

            self.service.writer.write_rows = counted_write
        self.service.start()
        self.link = None

    def _empty_telemetry_tables(self) -> None:
        # --store may name a database an earlier mode (or run) wrote to: count this pass's rows only.
        from sqlalchemy import delete

        from coordinator.store.telemetry_tables import TelemetryLatestRow, TelemetryRollupRow, TelemetrySampleRow

        with self.store.session() as s:
            for table in (TelemetrySampleRow, TelemetryLatestRow, TelemetryRollupRow):
                s.execute(delete(table))

    def _handle(self, topic: str, payload: bytes):
        if not self.first:
            self.first = time.perf_counter()
        return self.ingest.handle(topic, payload)

    def _take(self, topic: str, payload: bytes) -> bool:
        if not self.first:
            self.first = time.perf_counter()
        return self.ingest.take(topic, payload)

    def connect(self) -> None:
        from coordinator.config import MqttConfig
        from coordinator.link import CoordinatorLink

        cfg = MqttConfig(url=f"mqtt://127.0.0.1:{self.port}", client_id="bench-coordinator", receive_maximum=self.receive_maximum)
        self.link = CoordinatorLink(cfg, self._handle, take=self._take)
        if not self.manual_ack:
            self.link.client.manual_ack_set(False)  # paho acknowledges on receipt; the link's client.ack() calls do nothing
        subscribed = threading.Event()
        self.link.client.on_subscribe = lambda *a: subscribed.set()  # the link does not use it; the bench needs the SUBACK
        self.link.start()
        if not subscribed.wait(10):
            raise SystemExit("bench: the coordinator link could not subscribe")

    def disconnect(self, final: bool = False) -> None:
        if final:
            self.link.closing = True  # our own disconnect: the link logs no warning for it
            self.link.client.disconnect(properties=_end_session())
        self.link.stop()

    def close(self) -> tuple[int, int, float, float, float]:
        from sqlalchemy import func, select

        from coordinator.store.telemetry_tables import TelemetrySampleRow

        self.service.stop()
        with self.store.session() as s:
            rows = s.scalar(select(func.count()).select_from(TelemetrySampleRow))
            distinct = s.scalar(select(func.count(func.distinct(TelemetrySampleRow.message_id))))
        sample = self.metrics.registry.get_sample_value
        dropped = sum(
            sample("edgefleet_mqtt_dropped_total", {"reason": r}) or 0
            for r in ("malformed", "unknown_device", "device_mismatch", "bad_telemetry", "error", "store_unavailable", "unhandled")
        )
        batches = sample("edgefleet_telemetry_batch_seconds_count") or 0
        batch_s = sample("edgefleet_telemetry_batch_seconds_sum") or 0
        self.store.close()
        self.result_text = f"{rows} rows, {distinct} distinct message ids, {dropped:.0f} dropped; {batches:.0f} batches of {1000 * batch_s / max(batches, 1):.0f} ms"
        return rows, distinct, dropped, batches, batch_s

    def result(self) -> str:
        return f"{self.stored} stored"


class InProcessIngestReceiver(IngestReceiver):
    """The same path with the telemetry work on threads of this process (telemetry.ingest_process = false)."""

    process = False


class EarlyAckIngestReceiver(IngestReceiver):
    """The coordinator's default path, but acknowledging on receipt (paho's automatic PUBACK, as before
    acknowledgement after the commit): what waiting for the commit costs."""

    manual_ack = False


class LinkOnlyReceiver(IngestReceiver):
    """The coordinator's link and Ingest (decode, device check) with a telemetry handler that only counts:
    what the MQTT side costs before any telemetry work (coordinator/link.py, ingest.py)."""

    process = False

    def __init__(self, port: int, messages: int, store_url: str, args):
        from edgefleet import topics

        super().__init__(port, messages, store_url, args)
        self.service.stop()
        self.ingest.raw_handlers.clear()
        count = 0

        def handler(env) -> bool:
            nonlocal count
            count += 1
            if count == self.messages:
                self.last = time.perf_counter()
                self.done.set()
            return True

        self.ingest.handlers[topics.TELEMETRY] = handler


RECEIVERS = {"raw": None, "link": LinkOnlyReceiver, "inproc": InProcessIngestReceiver, "early": EarlyAckIngestReceiver, "ingest": IngestReceiver}


def _end_session():
    """DISCONNECT properties that end the persistent session: a finished receiver must not keep a share of
    the group's messages queued at the broker for the next measurement."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.DISCONNECT)
    props.SessionExpiryInterval = 0
    return props


def _cpu_of(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def _child_cpu(receiver) -> float:
    """CPU seconds the receiver's telemetry process has used so far (0 without one)."""
    import psutil

    remote = getattr(getattr(receiver, "service", None), "remote", None)
    if remote is None or remote.pid is None:
        return 0.0
    t = psutil.Process(remote.pid).cpu_times()
    return t.user + t.system


def measure(receiver, broker, stream: Path, messages: int, mode: str, timeout: float) -> tuple[float, float, float, float, float]:
    """(receiver msg/s, publisher msg/s, CPU seconds per message in this process, in the receiver's
    telemetry process and in the broker) for one pass of the stream.

    live:  the publisher runs while the receiver works (they share this machine's cores).
    drain: the receiver's persistent session exists but it is offline while the whole stream is published
           and queued by the broker; then it connects and works the backlog off alone, as a coordinator
           whose devices are other machines would.
    """
    port = broker.port
    if mode == "drain":
        receiver.connect()
        receiver.disconnect()
        pub = Publisher(port, stream)
        pub.go()
        pub_rate = pub.result()
        cpu0, child0, broker0 = time.process_time(), _child_cpu(receiver), _cpu_of(broker.pid)
        receiver.connect()
    else:
        receiver.connect()
        pub = Publisher(port, stream)
        cpu0, child0, broker0 = time.process_time(), _child_cpu(receiver), _cpu_of(broker.pid)
        pub.go()
    ok = receiver.done.wait(timeout)
    cpu, child, broker_cpu = time.process_time() - cpu0, _child_cpu(receiver) - child0, _cpu_of(broker.pid) - broker0
    if mode == "live":
        pub_rate = pub.result()
    receiver.disconnect(final=True)
    if not ok:
        raise SystemExit(f"bench: {type(receiver).__name__} {mode}: {receiver.result()} of {messages} within {timeout:.0f} s")
    return (messages - 1) / (receiver.last - receiver.first), pub_rate, cpu / messages, child / messages, broker_cpu / messages


def register_devices(store_url: str, n: int) -> list[str]:
    from coordinator.store.db import Store
    from coordinator.store.devices import DeviceRegistry

    store = Store(store_url)
    registry = DeviceRegistry(store)
    ids = [registry.register(f"bench-{i:05d}-{uuid.uuid4().hex[:4]}", {"bench": "ingest"}, 3600).device.id for i in range(n)]
    store.close()
    return ids


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--publisher":
        publisher_main(int(sys.argv[2]), Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--store", default="", help="SQLAlchemy URL of a scratch database (its telemetry tables are emptied); default: SQLite files in a temp dir")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--receive-maximum", type=int, default=10_000, help="the coordinator link's MQTT 5 in-flight window (mqtt.receive_maximum)")
    parser.add_argument("--modes", default="drain,live", help="drain (broker backlog, receiver alone), live (publisher running beside it)")
    parser.add_argument(
        "--receivers", default="raw,link,inproc,ingest",
        help="which receivers to run: raw, link, inproc (telemetry on threads of this process), early (the default path acknowledging on receipt, as before ack-after-store), ingest (telemetry in a child process, acknowledged after the commit: the coordinator's default); raw is needed for the ratio",
    )
    parser.add_argument("--repeat", type=int, default=3, help="passes per receiver, round robin; the medians are reported")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()

    from tests.mosquitto import MosquittoProcess

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    receivers = {r.strip() for r in args.receivers.split(",") if r.strip()}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp_path = Path(tmp)
        ids_by_mode = {}
        urls = {}
        for mode in modes:
            urls[mode] = args.store or f"sqlite:///{tmp_path / f'{mode}.db'}"
            ids_by_mode[mode] = register_devices(urls[mode], args.devices)
        broker = MosquittoProcess(BROKER_CONF, tmp_path / "broker").start()
        try:
            for mode in modes:
                stream = tmp_path / f"{mode}.bin"
                make_stream(stream, ids_by_mode[mode], args.messages)
                results[mode] = per = {"size": stream.stat().st_size / args.messages}
                # Round robin, --repeat times: the load other processes put on the machine drifts, and each
                # receiver should see the same mix of it. Figures are the medians of the passes.
                for _ in range(args.repeat):
                    for name in [r for r in RECEIVERS if r in receivers]:
                        if name == "raw":
                            receiver = RawReceiver(broker.port, args.messages)
                        else:
                            receiver = RECEIVERS[name](broker.port, args.messages, urls[mode], args)
                        rate, pub, cpu, child_cpu, broker_cpu = measure(receiver, broker, stream, args.messages, mode, args.timeout)
                        r = per.setdefault(name, {"rates": [], "pub": [], "cpu": [], "child_cpu": [], "broker_cpu": [], "rows": [], "distinct": [], "text": []})
                        r["rates"].append(rate)
                        r["pub"].append(pub)
                        r["cpu"].append(cpu)
                        r["child_cpu"].append(child_cpu)
                        r["broker_cpu"].append(broker_cpu)
                        if name in ("ingest", "inproc", "early"):
                            rows, distinct, _, _, _ = receiver.close()
                            r["rows"].append(rows)
                            r["distinct"].append(distinct)
                            r["text"].append(receiver.result_text)
                        elif name == "link":
                            receiver.close()
                for r in per.values():
                    if isinstance(r, dict):
                        for key in ("pub", "cpu", "child_cpu", "broker_cpu"):
                            r[key] = statistics.median(r[key])
                        r["rate"] = statistics.median(r["rates"])
        finally:
            broker.stop()

    print(f"stream: {args.messages} telemetry reports from {args.devices} devices, QoS 1, one publisher process,"
          f" store {(args.store or 'sqlite').split(':', 1)[0]}")
    lost_any = False

    def rates(r) -> str:
        return "passes " + ", ".join(f"{x:,.0f}" for x in r["rates"])

    for mode in modes:
        per = results[mode]
        raw = per.get("raw")
        print(f"\n[{mode}] {per['size']:.0f} bytes per report" + (f"; publisher {raw['pub']:,.0f} msg/s (raw passes)" if raw else ""))
        if raw:
            print(f"  raw paho subscriber:   {raw['rate']:8,.0f} msg/s received   ({raw['cpu'] * 1e6:.0f} us CPU per message, broker {raw['broker_cpu'] * 1e6:.0f} us; {rates(raw)})")
        if "link" in per:
            link = per["link"]
            vs = f"{link['rate'] / raw['rate']:.2f}x raw; " if raw else ""
            print(f"  link + Ingest only:    {link['rate']:8,.0f} msg/s handled    ({link['cpu'] * 1e6:.0f} us CPU per message, broker {link['broker_cpu'] * 1e6:.0f} us, telemetry handler a no-op; {vs}{rates(link)})")
        for name, label in (("inproc", "ingest, one process: "), ("early", "ingest, early acks:  "), ("ingest", "ingest (coordinator):")):
            if name not in per:
                continue
            r = per[name]
            lost = max(args.messages - d for d in r["distinct"])
            ok = not lost and all(n == args.messages for n in r["rows"])
            lost_any |= not ok
            cpu = f"{r['cpu'] * 1e6:.0f} us CPU per message" + (f" + {r['child_cpu'] * 1e6:.0f} us in the telemetry process" if r["child_cpu"] else "") + f", broker {r['broker_cpu'] * 1e6:.0f} us"
            print(f"  {label}  {r['rate']:8,.0f} msg/s stored     ({cpu}; {rates(r)})")
            print(f"      last pass: {r['text'][-1]}")
            if raw:
                ratio = r["rate"] / raw["rate"]
                print(f"      ratio to raw:      {ratio:8.2f}   target >= {TARGET_RATIO}    {'PASS' if ratio >= TARGET_RATIO else 'MISS'}")
            print(f"      stored per second: {r['rate']:8,.0f}   target >= {TARGET_RATE:,.0f}  {'PASS' if r['rate'] >= TARGET_RATE else 'MISS'}")
            verdict = "PASS" if ok else f"FAIL ({lost} lost in some pass, rows per pass {r['rows']})"
            print(f"      zero loss:         {verdict} (every pass)")
    if lost_any:
        sys.exit(1)


if __name__ == "__main__":
    main()
