"""edgectl telemetry: fleet telemetry from the coordinator (a root command, not a group).

Without --since each row is a device's newest report (one row per model version in it); with --since
(and --until) each row merges that time range per device and model version; --series prints every stored
window; --fleet prints per-model-version figures over the selected devices instead. grpc, rich.live and
the protobuf modules are imported inside the command: this module loads for `edgectl --help`.
"""
from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Optional

import typer

from coordinator.cli.errors import CliError
from coordinator.cli.output import OutputFormat, OutputOpt

# The agent's power source when a device has neither a meter nor a power model (its figures are zeros).
NO_POWER = "none"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, now: datetime, *, option: str) -> datetime:
    """'10m', '1h', '2d' (that long before now) or an ISO 8601 time (UTC when it has no offset)."""
    match = _DURATION.match(text)
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise CliError(f"{option} {text!r}: expected a duration such as 30s, 10m, 1h, 2d, or an ISO 8601 time such as 2026-11-21T10:00:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def check_model(text: str) -> str:
    name, sep, version = text.strip().partition(":")
    if not name or (sep and not version):
        raise CliError(f"--model {text!r}: expected NAME or NAME:VERSION")
    return text.strip()


def telemetry(
    ctx: typer.Context,
    select: Annotated[
        Optional[str], typer.Option("--select", "-s", help="Only devices whose labels match all of k=v,k2=v2.", show_default=False)
    ] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", metavar="NAME[:VERSION]", help="Only this model (or model version).", show_default=False)] = None,
    since: Annotated[
        Optional[str],
        typer.Option("--since", metavar="10m|1h|2d|ISO", help="Merge each device's reports from then until now (default: its latest report only).", show_default=False),
    ] = None,
    until: Annotated[Optional[str], typer.Option("--until", metavar="10m|1h|ISO", help="End of the range (with --since or --series).", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option("--device", "-d", metavar="REF", help="Only this device (name or id).", show_default=False)] = None,
    series: Annotated[bool, typer.Option("--series", help="Every stored window in the range, oldest first, instead of one row per device.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="With --series: at most this many rows (the newest).")] = 1000,
    fleet: Annotated[bool, typer.Option("--fleet", help="Per model version over the selected devices, instead of per device.")] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Refresh until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option("--interval", min=0.2, metavar="SECONDS", help="Refresh period of --watch.")] = 2.0,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Latency percentiles, inferences/s, energy per inference, accuracy, drift, CPU and memory per device and model version.

    Examples:
      $ edgectl telemetry
      $ edgectl telemetry --select role=camera --watch
      $ edgectl telemetry --model digits:3 --since 1h -o json
      $ edgectl telemetry --device cam-01 --series --since 10m
      $ edgectl telemetry --fleet --since 1h
    """
    from coordinator.cli.context import admin_client
    from coordinator.cli.labels import parse_selector

    request_args = {
        "selector": parse_selector(select) if select is not None else "",
        "model": check_model(model) if model is not None else "",
        "device": device.strip() if device else "",
    }
    # Check the times now, so a typo fails before any call.
    now = datetime.now(timezone.utc)
    if since is not None:
        parse_when(since, now, option="--since")
    if until is not None:
        parse_when(until, now, option="--until")
        if since is None and not series:
            raise CliError("--until needs --since (or --series): the default view is each device's latest report")

    def build_request():
        from edgefleet.v1 import admin_pb2

        moment = datetime.now(timezone.utc)  # relative times slide with --watch
        req = admin_pb2.TelemetryQuery(**request_args, limit=limit if series else 0)
        req.view = admin_pb2.TELEMETRY_VIEW_SERIES if series else (admin_pb2.TELEMETRY_VIEW_SUMMARY if since else admin_pb2.TELEMETRY_VIEW_LATEST)
        if since is not None:
            req.since.FromDatetime(parse_when(since, moment, option="--since"))
        if until is not None:
            req.until.FromDatetime(parse_when(until, moment, option="--until"))
        return req

    with admin_client(ctx) as admin:
        response = admin.call("QueryTelemetry", build_request())
        if not watch:
            _print(response, fleet=fleet, output=output)
            return
        _watch(admin, build_request, response, fleet=fleet, output=output, interval=interval)


# ---------------------------------------------------------------- plain rows (-o json)


def row_to_plain(row: Any, now: datetime | None = None) -> dict[str, Any]:
    """A TelemetryRow as one flat JSON object (null where the device did not report the figure)."""
    from coordinator.cli.output import timestamp_datetime, timestamp_iso

    now = now or datetime.now(timezone.utc)
    m = row.model if row.HasField("model") else None
    power = m.power if m is not None and m.HasField("power") else None
    measured = power is not None and power.source != NO_POWER
    acc = m.accuracy if m is not None and m.HasField("accuracy") else None
    drift = m.drift if m is not None and m.HasField("drift") else None
    system = row.system if row.HasField("system") else None
    at = timestamp_datetime(row.at)
    return {
        "device_id": row.device_id,
        "device_name": row.device_name,
        "model": m.model if m else None,
        "version": m.version if m else None,
        "variant_id": m.variant_id if m else None,
        "window_start": timestamp_iso(row.window_start),
        "window_end": timestamp_iso(row.at),
        "age_s": round((now - at).total_seconds(), 3) if at else None,
        "windows": row.windows,
        "rolled_up": row.rolled_up,
        "requests": m.requests if m else 0,
        "errors": m.errors if m else 0,
        "p50_ms": m.p50_ms if m else None,
        "p95_ms": m.p95_ms if m else None,
        "p99_ms": m.p99_ms if m else None,
        "inferences_per_s": m.inferences_per_s if m else None,
        "energy_per_inference_mj": power.energy_per_inference_mj if measured else None,
        "avg_watts": power.avg_watts if measured else None,
        "power_source": power.source if power else None,
        "golden_accuracy": acc.golden_metric if acc and acc.golden_count else None,
        "golden_count": acc.golden_count if acc else 0,
        "online_accuracy": acc.online_metric if acc and acc.online_count else None,
        "online_count": acc.online_count if acc else 0,
        "mean_confidence": acc.mean_confidence if acc else None,
        "drift_method": drift.method if drift else None,
        "drift_max": drift.max_score if drift else None,
        "cpu_percent": system.cpu_percent if system else None,
        "rss_bytes": system.rss_bytes if system else None,
        "temperature_c": system.temperature_c if system and system.has_temperature else None,
        "outbox_dropped": row.outbox_dropped,
    }


def _plain(response: Any, fleet: bool) -> list[dict[str, Any]]:
    from coordinator.cli.output import message_to_plain

    if fleet:
        return [message_to_plain(f) for f in response.fleet]
    now = datetime.now(timezone.utc)
    return [row_to_plain(r, now) for r in response.rows]


# ---------------------------------------------------------------- tables


def _ms(value: float) -> str:
    if value <= 0:
        return "-"
    if value < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float, n: int) -> str:
    return f"{value:.3f} (n={n})" if n else "-"


def _error_pct(errors: int, requests: int) -> str:
    return f"{100 * errors / requests:.1f}" if requests else "-"


def rows_table(rows: Any, now: datetime | None = None):
    from coordinator.cli.output import human_bytes, new_table, relative_age

    now = now or datetime.now(timezone.utc)
    table = new_table(
        "DEVICE", "MODEL", "VARIANT", "P50 ms", "P95 ms", "P99 ms", "INF/S", "ERR%", "mJ/INF", "GOLDEN", "ONLINE", "CONF", "DRIFT", "CPU%", "RSS", "AGE"
    )
    for r in rows:
        m = r.model if r.HasField("model") else None
        system = r.system if r.HasField("system") else None
        if m is not None:
            has_power = m.HasField("power") and m.power.source != NO_POWER
            power = f"{m.power.energy_per_inference_mj:.2f} {m.power.source or '?'}" if has_power else "-"
            acc = m.accuracy if m.HasField("accuracy") else None
            drift = f"{m.drift.max_score:.3f} {m.drift.method}".strip() if m.HasField("drift") else "-"
            cells = [
                f"{m.model}:{m.version}", m.variant_id or "-", _ms(m.p50_ms), _ms(m.p95_ms), _ms(m.p99_ms), f"{m.inferences_per_s:.1f}",
                _error_pct(m.errors, m.requests), power,
                _ratio(acc.golden_metric, acc.golden_count) if acc else "-",
                _ratio(acc.online_metric, acc.online_count) if acc else "-",
                f"{acc.mean_confidence:.2f}" if acc and m.requests else "-",
                drift,
            ]
        else:
            cells = ["-"] * 12
        table.add_row(
            r.device_name or r.device_id,
            *cells,
            f"{system.cpu_percent:.1f}" if system else "-",
            human_bytes(system.rss_bytes) if system else "-",
            relative_age(r.at, now) + (" *" if r.rolled_up else ""),
        )
    return table


def fleet_table(fleet: Any):
    from coordinator.cli.output import new_table

    table = new_table("MODEL", "DEVICES", "REQUESTS", "ERR%", "INF/S", "P50 ms", "P95 ms", "P99 ms", "mJ/INF", "GOLDEN", "ONLINE", "CONF", "DRIFT")
    for f in fleet:
        table.add_row(
            f"{f.model}:{f.version}", str(f.devices), str(f.requests), _error_pct(f.errors, f.requests), f"{f.inferences_per_s:.1f}",
            _ms(f.p50_ms), _ms(f.p95_ms), _ms(f.p99_ms),
            f"{f.energy_per_inference_mj:.2f} (n={f.energy_devices})" if f.energy_devices else "-",
            _ratio(f.golden_accuracy, f.golden_count), _ratio(f.online_accuracy, f.online_count),
            f"{f.mean_confidence:.2f}" if f.mean_confidence else "-", f"{f.drift_max:.3f}" if f.drift_max else "-",
        )
    return table


def _print(response: Any, *, fleet: bool, output: OutputFormat) -> None:
    from coordinator.cli.output import print_json, print_table

    if output is OutputFormat.json:
        print_json(_plain(response, fleet))
        return
    items = response.fleet if fleet else response.rows
    if not items:
        sys.stderr.write("No telemetry found.\n")
        return
    print_table(fleet_table(items) if fleet else rows_table(items))
    if not fleet and any(r.rolled_up for r in items):
        sys.stdout.write("* from downsampled rollups: percentiles are approximate\n")


# ---------------------------------------------------------------- --watch


def _watch(admin: Any, build_request, response: Any, *, fleet: bool, output: OutputFormat, interval: float) -> None:
    import json
    import threading

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    pause = threading.Event()  # never set: Event.wait is the refresh period, and Ctrl-C interrupts it
    if output is OutputFormat.json:
        # One JSON array per refresh and line, for scripts that follow the stream.
        try:
            while True:
                sys.stdout.write(json.dumps(_plain(response, fleet), separators=(",", ":")) + "\n")
                sys.stdout.flush()
                pause.wait(interval)
                response = admin.call("QueryTelemetry", build_request())
        except KeyboardInterrupt:
            return

    def render(resp: Any, problem: str = ""):
        stamp = datetime.now().strftime("%H:%M:%S")
        parts: list[Any] = [Text(f"every {interval:g}s, updated {stamp}; Ctrl-C to stop" + (f"  ({problem})" if problem else ""))]
        if fleet:
            parts.append(fleet_table(resp.fleet) if resp.fleet else Text("No telemetry found."))
        else:
            parts.append(rows_table(resp.rows) if resp.rows else Text("No telemetry found."))
            if resp.fleet:
                parts += [Text(""), fleet_table(resp.fleet)]
        return Group(*parts)

    try:
        with Live(render(response), auto_refresh=False, screen=False) as live:
            while True:
                pause.wait(interval)
                problem = ""
                try:
                    response = admin.call("QueryTelemetry", build_request())
                except CliError as exc:  # the coordinator restarting: keep the last figures, say so, retry
                    problem = str(exc)
                live.update(render(response, problem), refresh=True)
    except KeyboardInterrupt:
        return
