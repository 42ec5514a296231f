"""edge-coordinator: run the coordinator service."""
from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The edgefleet coordinator service.")


def _fail(msg: str) -> None:
    typer.echo(f"edge-coordinator: error: {msg}", err=True)
    raise typer.Exit(1)


def _load(config: Optional[Path]):
    from coordinator.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        _fail(str(exc))


@app.command()
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="TOML config file; EDGEFLEET_<SECTION>__<KEY> variables override it."),
) -> None:
    """Run the coordinator: gRPC admin and enrollment API, MQTT ingest, store, /metrics.

    Stops cleanly on SIGTERM or Ctrl-C. If the broker is unreachable at start the admin API still
    serves and the MQTT link keeps retrying with backoff, logging that it does.
    """
    cfg = _load(config)
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from coordinator.broker import BrokerAuthError
    from coordinator.service.app import Coordinator, StartupError
    from coordinator.store.db import StoreError

    try:
        coord = Coordinator(cfg)
        coord.start()
    except (StartupError, StoreError, BrokerAuthError) as exc:
        _fail(str(exc))
    stop = coord.stopped

    def on_signal(signum, frame):  # noqa: ANN001
        logging.getLogger(__name__).info("signal %s: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # Tests and scripts read this line to learn the bound addresses.
    # One write call: with unbuffered stdout, print() writes the newline separately and a log line on a
    # shared pipe could land in between.
    sys.stdout.write(f"edge-coordinator ready grpc={coord.grpc_address} metrics_port={coord.metrics_port} token_file={coord.token_path}\n")
    sys.stdout.flush()
    while not stop.wait(1.0):
        pass
    coord.stop()


@app.command("show-config")
def show_config(config: Optional[Path] = typer.Option(None, "--config", "-c")) -> None:
    """Print the effective configuration (secrets masked) as JSON."""
    cfg = _load(config)
    data = cfg.model_dump(mode="json")
    for section, key in (("mqtt", "password"), ("broker_auth", "admin_password")):
        if data[section][key]:
            data[section][key] = "***"
    import json

    typer.echo(json.dumps(data, indent=2))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
