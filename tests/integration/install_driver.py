"""A minimal agent for the install fault tests: AgentLink + Deployer + the SQLite outbox, nothing else.

    python -m tests.integration.install_driver STATE_DIR [--chunk-timeout S] [--window W] [--budget BYTES]

The state directory must hold an identity.json (written by the test). Events go through the outbox
(as in the daemon) and are also printed as `EVENT <state> <version> <active version>` lines. Honours
EDGEFLEET_AGENT_CRASH_AT (see agent/install/crash.py). SIGTERM stops cleanly.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from agent.deployer import Deployer
from agent.identity import load_identity
from agent.link import AgentLink
from agent.outbox import Outbox
from agent.version import AGENT_VERSION
from edgefleet import envelope, topics
from edgefleet.v1 import device_pb2, events_pb2


def say(line: str) -> None:
    # One write per line: the log on stderr shares the pipe, and print() writes the newline separately.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state_dir", type=Path)
    parser.add_argument("--chunk-timeout", type=float, default=2.0)
    parser.add_argument("--window", type=int, default=8)
    parser.add_argument("--budget", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    ident = load_identity(args.state_dir)
    device_id = ident.device_id
    outbox = Outbox.open(args.state_dir / "outbox.db")
    wake = threading.Event()
    stop = threading.Event()

    def emit(event: events_pb2.Event) -> None:
        outbox.put(topics.event(device_id), envelope.encode(device_id, event=event), 1)
        if event.WhichOneof("kind") == "install":
            p = event.install
            state = events_pb2.InstallState.Name(p.state).removeprefix("INSTALL_STATE_").lower()
            say(f"EVENT {state} {p.version or '-'} {p.active_model.version or '-'} {p.reason}")
        wake.set()

    holder: dict = {}

    def hello() -> device_pb2.Hello:
        deployer = holder.get("deployer")
        msg = device_pb2.Hello(agent_version=AGENT_VERSION, protocol_version=1)
        if deployer is not None:
            active = deployer.active_model()
            if active is not None:
                msg.active_model.CopyFrom(active)
            msg.last_manifest_sequence = deployer.last_sequence
        return msg

    link = AgentLink(ident, hello, on_command=lambda env: holder["deployer"].handle(env))
    deployer = Deployer(args.state_dir, ident, lambda topic, payload, qos: link.publish(topic, payload, qos=qos), emit,
                        storage_budget_bytes=args.budget, window=args.window, chunk_timeout_s=args.chunk_timeout,
                        connection_count=lambda: link.connects, tick_interval_s=0.1, acceptance_runs=5,
                        subscribe=link.subscribe, unsubscribe=link.unsubscribe)
    holder["deployer"] = deployer
    deployer.resume()
    link.start()

    def drain() -> None:
        # The daemon's outbox publisher in miniature: delete a record only once the broker has it.
        while not stop.is_set():
            if not link.connected.wait(0.2):
                continue
            records = outbox.peek(50)
            if not records:
                wake.wait(0.2)
                wake.clear()
                continue
            for record in records:
                info = link.publish(record.topic, record.payload, qos=record.qos)
                info.wait_for_publish(timeout=5)
                if not info.is_published():
                    break
                outbox.done([record.id])

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()

    def on_signal(signum, frame) -> None:  # noqa: ANN001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say("driver ready")
    stop.wait()
    deployer.close()
    drainer.join(5)
    link.stop()
    outbox.close()


if __name__ == "__main__":
    main()
