"""edge-agent's typer app: enroll | run | probe | profiles | simulate (agent.cli is the entry point and
parses `run` itself, without typer)."""
from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any, Optional

import typer

from agent.cli import PROFILE_HELP, RUN_HELP, RUN_OPTIONS, STATE_DIR_HELP, run_agent, setup_logging
from agent.identity import DEFAULT_STATE_DIR

app = typer.Typer(add_completion=False, no_args_is_help=True, help="The edgefleet device agent.")

STATE_DIR_OPT = typer.Option(DEFAULT_STATE_DIR, "--state-dir", "-s", envvar="EDGEFLEET_AGENT_STATE_DIR", help=STATE_DIR_HELP)
PROFILE_OPT = typer.Option(None, "--profile", "-p", envvar="EDGEFLEET_AGENT_PROFILE", help=PROFILE_HELP)


def _fail(msg: str) -> None:
    typer.echo(f"edge-agent: error: {msg}", err=True)
    raise typer.Exit(1)


def _logging(level: str) -> None:
    setup_logging(level)


@app.command()
def enroll(
    coordinator: str = typer.Option(..., "--coordinator", "-c", help="HOST:PORT of the coordinator's gRPC API."),
    token: str = typer.Option(..., "--token", "-t", help="One-time enrollment token from `edgectl device register`."),
    state_dir: Path = STATE_DIR_OPT,
    profile: Optional[str] = PROFILE_OPT,
    force: bool = typer.Option(False, "--force", help="Replace an existing identity in this state directory."),
) -> None:
    """Probe the hardware and exchange the token for this device's identity."""
    from agent.daemon import probe_hardware
    from agent.enroll import EnrollError, enroll as do_enroll
    from agent.identity import StateDirError, prepare_state_dir
    from agent.profile import ProfileError

    try:
        sd = prepare_state_dir(state_dir)
        hw = probe_hardware(sd, profile)
        ident = do_enroll(coordinator, token, sd, hw, force=force)
    except (EnrollError, StateDirError, ProfileError) as exc:
        _fail(str(exc))
    typer.echo(f"enrolled as {ident.device_name} ({ident.device_id}); identity saved in {sd}")
    typer.echo(f"next: edge-agent run --state-dir {sd}" + (f" --profile {profile}" if profile else ""))


def _option(dest: str) -> Any:
    """The typer Option for one of RUN_OPTIONS (agent.cli parses the same options with argparse)."""
    spec = next(o for o in RUN_OPTIONS if o.dest == dest)
    kwargs: dict[str, Any] = {"help": spec.help}
    if spec.envvar:
        kwargs["envvar"] = spec.envvar
    if spec.minimum is not None:
        kwargs["min"] = spec.minimum
    return typer.Option(spec.default, *spec.flags, **kwargs)


@app.command(help=RUN_HELP)
def run(
    state_dir: Path = _option("state_dir"),
    profile: Optional[str] = _option("profile"),
    mqtt_protocol: Optional[str] = _option("mqtt_protocol"),
    keepalive: Optional[int] = _option("keepalive"),
    socket: Optional[Path] = _option("socket"),
    telemetry_interval: Optional[float] = _option("telemetry_interval"),
    storage_budget: Optional[int] = _option("storage_budget"),
    log_level: str = _option("log_level"),
) -> None:
    # `edge-agent run` from the shell goes through agent.cli's argparse parser; this is the same command
    # for `edge-agent --help` and for callers of the typer app.
    run_agent(state_dir=state_dir, profile=profile, mqtt_protocol=mqtt_protocol, keepalive=keepalive, socket=socket,
              telemetry_interval=telemetry_interval, storage_budget=storage_budget, log_level=log_level)


@app.command()
def probe(
    state_dir: Path = STATE_DIR_OPT,
    profile: Optional[str] = PROFILE_OPT,
) -> None:
    """Print the hardware profile this agent would report, as JSON."""
    from google.protobuf.json_format import MessageToDict

    from agent.daemon import probe_hardware
    from agent.identity import StateDirError, prepare_state_dir
    from agent.profile import ProfileError

    try:
        hw = probe_hardware(prepare_state_dir(state_dir), profile)
    except (StateDirError, ProfileError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(MessageToDict(hw, preserving_proto_field_name=True), indent=2))


@app.command()
def profiles() -> None:
    """List the bundled hardware profiles."""
    from agent.profile import bundled_profiles

    for name in bundled_profiles():
        typer.echo(name)


@app.command()
def simulate(
    fleet_dir: Path = typer.Option(..., "--fleet-dir", "-d", help="One enrolled state directory per device (identity.json and a `profile` file)."),
    profile: list[str] = typer.Option(
        [], "--profile", "-p", help="NAME=PROFILE for one device, or PROFILE for every device without a `profile` file (repeatable)."
    ),
    rate: float = typer.Option(2.0, "--rate", min=0.0, help="Synthetic Predict calls per second per device (0: none)."),
    feedback: float = typer.Option(0.5, "--feedback", min=0.0, max=1.0, help="Share of golden-set requests followed by a Feedback with the label."),
    telemetry_interval: float = typer.Option(10.0, "--telemetry-interval", min=0.1, help="Seconds per telemetry window."),
    mqtt_protocol: Optional[str] = typer.Option(None, "--mqtt-protocol", help="Override the MQTT protocol from enrollment: 5 or 3.1.1."),
    keepalive: Optional[int] = typer.Option(None, "--keepalive", min=1, help="Override the MQTT keepalive (seconds)."),
    workers: int = typer.Option(4, "--workers", min=1, help="Threads running the devices' installs, telemetry and trials."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for request arrivals and random inputs."),
    enroll_from: Optional[Path] = typer.Option(
        None, "--enroll-from", help="Enroll the devices in this file first (JSON [{name, profile, token}] or lines NAME PROFILE TOKEN)."
    ),
    coordinator: Optional[str] = typer.Option(None, "--coordinator", "-c", help="HOST:PORT of the coordinator's gRPC API (with --enroll-from)."),
    enroll_only: bool = typer.Option(False, "--enroll-only", help="Exit after enrolling."),
    force: bool = typer.Option(False, "--force", help="Replace identities already in the fleet directory when enrolling."),
    log_level: str = typer.Option("info", "--log-level", help="Per-device logs (installs, trials, connects) show at debug; warnings always."),
) -> None:
    """Run many simulated devices in this one process, each a real agent with its own identity (SIGTERM stops all cleanly)."""
    _logging(log_level)
    import threading

    from agent.identity import StateDirError
    from agent.profile import ProfileError
    from agent.simulate.enroll import FleetEnrollError
    from agent.simulate.fleet import FleetStartError
    from agent.simulate.run import quiet_device_logs, run_simulation
    from agent.simulate.runtime import FleetOptions

    quiet_device_logs(log_level)
    stop = threading.Event()

    def on_signal(signum, frame):  # noqa: ANN001
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        options = FleetOptions(rate=rate, feedback=feedback, telemetry_interval_s=telemetry_interval, protocol=mqtt_protocol,
                               keepalive_s=keepalive, seed=seed)
        code = run_simulation(fleet_dir, options=options, profiles=profile, stop=stop, enroll_from=enroll_from, coordinator=coordinator,
                              enroll_only=enroll_only, force=force, workers=workers, say=lambda line: typer.echo(line))
    except (FleetEnrollError, FleetStartError, StateDirError, ProfileError, ValueError, OSError) as exc:
        _fail(str(exc))
    raise typer.Exit(code)
