"""`edgectl rollout ...`: plan (dry run), create, status [--watch], list, pause, resume, abort.

grpc and the generated protobuf modules are imported inside the commands: `edgectl --help` loads this
module and must stay fast.
"""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer

from coordinator.cli.context import admin_client
from coordinator.cli.errors import CliError
from coordinator.cli.output import OutputFormat, OutputOpt, message_to_plain, print_json

app = typer.Typer(
    help=(
        "Roll a model version out to devices: per-device variant, canary first, waves, abort and rollback.\n\n"
        "Examples:\n"
        "  $ edgectl rollout plan digits:3 --select role=camera --min-accuracy 0.95\n"
        "  $ edgectl rollout create digits:3 --select role=camera --canary 10% --waves 3 --min-accuracy 0.95 --max-p95-ms 20\n"
        "  $ edgectl rollout status r-1a2b3c --watch\n"
        "  $ edgectl rollout abort r-1a2b3c --reason 'latency regression'"
    ),
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(metavar="MODEL:VERSION", help="Model version to roll out (MODEL alone: its latest ready version).", show_default=False)]
IdArg = Annotated[str, typer.Argument(metavar="ROLLOUT", help="Rollout id (a unique prefix is enough).", show_default=False)]
SelectOpt = Annotated[Optional[str], typer.Option("--select", "-s", help="Devices whose labels match all of k=v,k2=v2 (default: every device).", show_default=False)]
MinMetricOpt = Annotated[Optional[float], typer.Option("--min-accuracy", "--min-metric", help="Only variants at least this accurate; also the acceptance floor on the golden set.", show_default=False)]
MaxMetricOpt = Annotated[Optional[float], typer.Option("--max-mae", "--max-metric", help="Regression: only variants with at most this error; also the acceptance ceiling.", show_default=False)]
MaxP95Opt = Annotated[Optional[float], typer.Option("--max-p95-ms", min=0.0, help="Latency budget (p95, ms) for selection, the acceptance test, the trial and the telemetry check.", show_default=False)]
MemoryOpt = Annotated[Optional[float], typer.Option("--memory-fraction", min=0.0, max=1.0, help="Model + arena must fit in this share of available memory (default: the coordinator's, 0.5).", show_default=False)]
CanaryOpt = Annotated[Optional[str], typer.Option("--canary", metavar="N|P%", help="Canary wave: N devices, or P% of them (default: the coordinator's, 10%).", show_default=False)]
WavesOpt = Annotated[Optional[int], typer.Option("--waves", min=1, max=100, help="Waves after the canary (default: the coordinator's, 1).", show_default=False)]


# ---------------------------------------------------------------- option parsing


def _percent(text: str, option: str) -> float:
    raw = text.strip().removesuffix("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise CliError(f"{option} {text!r}: expected a percentage such as 20%") from None
    if not 0 <= value <= 100:
        raise CliError(f"{option} {text!r}: a percentage is between 0% and 100%")
    return value


def parse_canary(text: str | None) -> tuple[float, int]:
    """'10%' -> (10.0, 0); '3' -> (0.0, 3)."""
    if text is None:
        return 0.0, 0
    text = text.strip()
    if text.endswith("%"):
        value = _percent(text, "--canary")
        if value == 0:
            raise CliError("--canary 0%: a rollout has a canary wave; give at least 1 device or a percentage above 0")
        return value, 0
    try:
        count = int(text)
    except ValueError:
        raise CliError(f"--canary {text!r}: expected a device count (3) or a percentage (10%)") from None
    if count < 1:
        raise CliError(f"--canary {text!r}: give at least 1 device")
    return 0.0, count


def parse_rate(text: str | None) -> int:
    """'30', '30/min' or '30/m' -> 30 devices per minute; '2/s' -> 120."""
    if text is None:
        return 0
    raw = text.strip().lower().replace(" ", "")
    number, _, unit = raw.partition("/")
    scale = {"": 1, "min": 1, "m": 1, "minute": 1, "s": 60, "sec": 60, "second": 60, "h": 1 / 60, "hour": 1 / 60}.get(unit)
    try:
        value = float(number) * scale if scale is not None else None
    except ValueError:
        value = None
    if value is None or value < 1:
        raise CliError(f"--rate {text!r}: expected devices per minute such as 30/min (at least 1)")
    return int(round(value))


def parse_error_rate(text: str | None) -> float:
    """'1%' -> 0.01; '0.01' -> 0.01."""
    if text is None:
        return 0.0
    if text.strip().endswith("%"):
        return _percent(text, "--max-error-rate") / 100
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"--max-error-rate {text!r}: expected a fraction (0.01) or a percentage (1%)") from None
    if not 0 <= value <= 1:
        raise CliError(f"--max-error-rate {text!r}: a fraction is between 0 and 1 (or write it as 1%)")
    return value


def _spec(ref: str, select: str | None, *, canary: str | None = None, waves: int | None = None, min_metric: float | None = None,
          max_metric: float | None = None, max_p95_ms: float | None = None, memory_fraction: float | None = None, **extra: Any) -> Any:
    from edgefleet.v1 import admin_pb2

    if not ref.strip():
        raise CliError("the model reference is empty; expected MODEL:VERSION")
    percent, count = parse_canary(canary)
    return admin_pb2.RolloutSpec(
        ref=ref.strip(), selector=(select or "").strip(), canary_percent=percent, canary_count=count, waves=waves or 0,
        min_metric=min_metric or 0.0, max_metric=max_metric or 0.0, max_p95_ms=max_p95_ms or 0.0,
        memory_fraction=memory_fraction or 0.0, **extra,
    )


# ---------------------------------------------------------------- printing


def _install(progress: Any) -> str:
    from coordinator.cli.output import enum_word

    word = enum_word(progress.DESCRIPTOR.fields_by_name["install_state"].enum_type, progress.install_state)
    if word == "unknown":
        return "-"
    if word == "downloading" and progress.bytes_total:
        return f"downloading {100 * progress.bytes_done // progress.bytes_total}%"
    return word


def _counts_text(rollout: Any) -> str:
    order = ("committed", "installing", "sent", "pending", "failed", "rolled_back", "timed_out", "skipped")
    counts = dict(rollout.counts)
    return ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s)) or "no devices"


def _wave_word(wave: int, waves: int) -> str:
    """Waves as people count them, from 1 (the wire counts from 0)."""
    return f"{wave + 1}" + (" canary" if wave == 0 and waves > 1 else "")


def _wave_text(rollout: Any) -> str:
    if not rollout.waves:
        return "-"
    return f"wave {rollout.current_wave + 1}/{rollout.waves}" + (" (canary)" if rollout.current_wave == 0 and rollout.waves > 1 else "")


def print_plan(plan: Any) -> None:
    from coordinator.cli.output import new_table, print_table

    included = [d for d in plan.devices if not d.excluded]
    excluded = [d for d in plan.devices if d.excluded]
    sys.stdout.write(f"plan for {plan.ref}: {len(included)} devices in {plan.waves} waves, {len(excluded)} excluded\n\n")
    if included:
        table = new_table("WAVE", "DEVICE", "CLASS", "VARIANT", "WHY")
        for d in included:
            table.add_row(_wave_word(d.wave, plan.waves), d.device_name or d.device_id, d.hardware_class or "-", d.variant_id, d.reason)
        print_table(table)
    if excluded:
        sys.stdout.write("\nexcluded:\n")
        table = new_table("DEVICE", "CLASS", "REASON")
        for d in excluded:
            table.add_row(d.device_name or d.device_id, d.hardware_class or "-", d.reason)
        print_table(table)
    if not included:
        sys.stdout.write("\nno device would get a model: `rollout create` would be refused\n")


def print_rollout(r: Any) -> None:
    from coordinator.cli.output import new_table, print_table, relative_age, timestamp_iso

    spec = r.spec
    lines = [f"rollout {r.id}  {spec.ref}  {r.state}  {_wave_text(r)}"]
    lines.append(f"  selector: {spec.selector or '(every device)'}")
    bounds = []
    if spec.min_metric:
        bounds.append(f"min metric {spec.min_metric:g}")
    if spec.max_metric:
        bounds.append(f"max metric {spec.max_metric:g}")
    if spec.max_p95_ms:
        bounds.append(f"p95 <= {spec.max_p95_ms:g} ms")
    if spec.max_error_rate:
        bounds.append(f"error rate <= {100 * spec.max_error_rate:g}%")
    if bounds:
        lines.append(f"  bounds:   {', '.join(bounds)}")
    canary = f"{spec.canary_count} device{'s' if spec.canary_count != 1 else ''}" if spec.canary_count else f"{spec.canary_percent:g}%"
    rate = f"{spec.rate_per_minute}/min" if spec.rate_per_minute else "no limit"
    lines.append(f"  waves:    canary {canary}, then {spec.waves} wave{'s' if spec.waves != 1 else ''}; rate {rate}; device timeout {spec.device_timeout_s} s; observe {spec.observe_s} s")
    lines.append(f"  abort:    more than {spec.max_failure_percent:g}% failed once {spec.min_devices_for_abort} finished")
    lines.append(f"  created:  {timestamp_iso(r.created_at)} ({relative_age(r.created_at)})" + (f"; finished {timestamp_iso(r.finished_at)}" if r.HasField("finished_at") else ""))
    if r.reason:
        lines.append(f"  reason:   {' '.join(r.reason.split())}")
    lines.append(f"  devices:  {_counts_text(r)}")
    sys.stdout.write("\n".join(lines) + "\n\n")
    table = new_table("WAVE", "DEVICE", "VARIANT", "STATE", "INSTALL", "ROLLBACK", "DETAIL")
    for d in r.progress:
        table.add_row(
            _wave_word(d.wave, r.waves) if d.variant_id else "-", d.device_name or d.device_id, d.variant_id or "-", d.state, _install(d),
            d.rollback or "-", " ".join(d.detail.split()) or "-",
        )
    print_table(table)


def _watch(admin: Any, rollout_id: str, output: OutputFormat) -> Any:
    """Follow a rollout: a line per change; the final state printed whole. Returns the last Rollout."""
    from edgefleet.v1 import admin_pb2

    last = None
    seen: dict[str, tuple] = {}
    header = None
    try:
        for r in admin.stream("WatchRollout", admin_pb2.GetRolloutRequest(id=rollout_id)):
            last = r
            if output is OutputFormat.json:
                continue
            now = datetime.now(timezone.utc).strftime("%H:%M:%S")
            head = (r.state, r.current_wave)
            if head != header:
                header = head
                sys.stderr.write(f"{now} {r.id} {r.state} {_wave_text(r)}: {_counts_text(r)}\n")
            for d in r.progress:
                key = (d.state, _install(d), d.rollback)
                if seen.get(d.device_id) != key:
                    first = d.device_id not in seen
                    seen[d.device_id] = key
                    if first and d.state in ("pending", "skipped"):
                        continue
                    extra = f" rollback {d.rollback}" if d.rollback else ""
                    detail = f": {' '.join(d.detail.split())}" if d.detail and d.state in ("failed", "rolled_back", "timed_out") else ""
                    sys.stderr.write(f"{now}   {d.device_name or d.device_id} {d.variant_id or '-'} {d.state} ({_install(d)}){extra}{detail}\n")
    except KeyboardInterrupt:
        sys.stderr.write(f"stopped watching; the rollout goes on in the coordinator: edgectl rollout status {rollout_id}\n")
        raise typer.Exit(130) from None
    return last


def _finish(r: Any, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        print_json(message_to_plain(r))
    else:
        print_rollout(r)
    if r.state == "aborted":
        raise CliError(f"rollout {r.id} was aborted: {r.reason or 'no reason given'}")


# ---------------------------------------------------------------- commands


@app.command("plan")
def plan(
    ctx: typer.Context,
    ref: RefArg,
    select: SelectOpt = None,
    canary: CanaryOpt = None,
    waves: WavesOpt = None,
    min_metric: MinMetricOpt = None,
    max_metric: MaxMetricOpt = None,
    max_p95_ms: MaxP95Opt = None,
    memory_fraction: MemoryOpt = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Dry run: which variant each device would get and why, its wave, and every excluded device with the reason.

    Examples:
      $ edgectl rollout plan digits:3 --select role=camera
      $ edgectl rollout plan digits:3 --select role=camera --min-accuracy 0.95 --max-p95-ms 20 -o json
    """
    request = _spec(ref, select, canary=canary, waves=waves, min_metric=min_metric, max_metric=max_metric, max_p95_ms=max_p95_ms, memory_fraction=memory_fraction)
    with admin_client(ctx) as admin:
        response = admin.call("PlanRollout", request, timeout_s=60)
    if output is OutputFormat.json:
        print_json(message_to_plain(response))
    else:
        print_plan(response)


@app.command("create")
def create(
    ctx: typer.Context,
    ref: RefArg,
    select: SelectOpt = None,
    canary: CanaryOpt = None,
    waves: WavesOpt = None,
    min_metric: MinMetricOpt = None,
    max_metric: MaxMetricOpt = None,
    max_p95_ms: MaxP95Opt = None,
    memory_fraction: MemoryOpt = None,
    max_error_rate: Annotated[Optional[str], typer.Option("--max-error-rate", metavar="P%|F", help="Abort (telemetry) and roll back on the device (trial) above this error rate.", show_default=False)] = None,
    rate: Annotated[Optional[str], typer.Option("--rate", metavar="N/min", help="Devices sent a deploy per minute (default: no limit).", show_default=False)] = None,
    device_timeout: Annotated[Optional[int], typer.Option("--device-timeout", metavar="S", min=1, help="A device silent this long about its install counts as failed (timed_out).", show_default=False)] = None,
    max_failures: Annotated[Optional[str], typer.Option("--max-failures", metavar="P%", help="Abort when more than this share of finished devices failed (default 20%).", show_default=False)] = None,
    min_devices: Annotated[Optional[int], typer.Option("--min-devices", min=1, help="... once at least this many devices finished (default 3).", show_default=False)] = None,
    observe: Annotated[Optional[int], typer.Option("--observe", metavar="S", min=0, help="After each wave, watch its telemetry this long before the next one.", show_default=False)] = None,
    trial_inferences: Annotated[Optional[int], typer.Option("--trial-inferences", min=1, help="Trial on the device: this many inferences ...", show_default=False)] = None,
    trial_seconds: Annotated[Optional[int], typer.Option("--trial-seconds", min=1, help="... or this many seconds, whichever comes first.", show_default=False)] = None,
    min_online_accuracy: Annotated[Optional[float], typer.Option("--min-online-accuracy", min=0.0, max=1.0, help="Trial on the device: roll back when the accuracy apps report through Feedback falls below this (not a selection filter).", show_default=False)] = None,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept with the rollout).", show_default=False)] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the rollout until it ends (exit status 1 when aborted).")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Start a rollout: canary wave first, then the rest in waves; stops and rolls back on the abort criteria.

    Refused, with the reasons, when no device matches, when no variant fits any device, or when a
    matching device is in another rollout that has not finished.

    Examples:
      $ edgectl rollout create digits:3 --select role=camera --canary 10% --waves 3 --min-accuracy 0.95 --max-p95-ms 20
      $ edgectl rollout create digits:3 -s site=lab --canary 2 --rate 30/min --max-failures 10% --observe 300 --watch
    """
    extra: dict[str, Any] = {
        "max_error_rate": parse_error_rate(max_error_rate),
        "rate_per_minute": parse_rate(rate),
        "device_timeout_s": device_timeout or 0,
        "max_failure_percent": _percent(max_failures, "--max-failures") if max_failures is not None else 0.0,
        "min_devices_for_abort": min_devices or 0,
        "observe_s": observe or 0,
        "trial_inferences": trial_inferences or 0,
        "trial_seconds": trial_seconds or 0,
        "min_online_metric": min_online_accuracy or 0.0,
        "reason": reason or "",
    }
    request = _spec(ref, select, canary=canary, waves=waves, min_metric=min_metric, max_metric=max_metric, max_p95_ms=max_p95_ms, memory_fraction=memory_fraction, **extra)
    with admin_client(ctx) as admin:
        rollout = admin.call("CreateRollout", request, timeout_s=120)
        skipped = dict(rollout.counts).get("skipped", 0)
        sys.stderr.write(f"rollout {rollout.id} of {rollout.spec.ref} created: {len(rollout.progress) - skipped} devices in {rollout.waves} waves, {skipped} excluded\n")
        if watch:
            rollout = _watch(admin, rollout.id, output) or rollout
            _finish(rollout, output)
            return
    if output is OutputFormat.json:
        print_json(message_to_plain(rollout))
    else:
        print_rollout(rollout)


@app.command("status")
def status(
    ctx: typer.Context,
    rollout_id: IdArg,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the rollout until it ends (exit status 1 when aborted).")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Show a rollout: its state and wave, and every device's state, install progress and rollback.

    Examples:
      $ edgectl rollout status r-1a2b3c
      $ edgectl rollout status r-1a --watch
    """
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        if watch:
            last = _watch(admin, rollout_id, output)
            if last is None:
                raise CliError(f"the coordinator sent nothing about rollout {rollout_id}")
            _finish(last, output)
            return
        rollout = admin.call("GetRollout", admin_pb2.GetRolloutRequest(id=rollout_id))
    if output is OutputFormat.json:
        print_json(message_to_plain(rollout))
    else:
        print_rollout(rollout)


@app.command("list")
def list_rollouts(ctx: typer.Context, output: OutputOpt = OutputFormat.table) -> None:
    """List rollouts, newest first.

    Examples:
      $ edgectl rollout list
      $ edgectl rollout list -o json
    """
    from coordinator.cli.output import new_table, print_table, relative_age
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        response = admin.call("ListRollouts", admin_pb2.ListRolloutsRequest())
    if output is OutputFormat.json:
        print_json([message_to_plain(r) for r in response.rollouts])
        return
    if not response.rollouts:
        sys.stderr.write("No rollouts found.\n")
        return
    table = new_table("ID", "MODEL", "STATE", "WAVE", "DEVICES", "SELECTOR", "CREATED", "REASON")
    for r in response.rollouts:
        table.add_row(r.id, r.spec.ref, r.state, _wave_text(r), _counts_text(r), r.spec.selector or "*", relative_age(r.created_at), " ".join(r.reason.split())[:80] or "-")
    print_table(table)


def _control(ctx: typer.Context, rollout_id: str, action: str, reason: str | None, output: OutputFormat) -> None:
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        rollout = admin.call("ControlRollout", admin_pb2.ControlRolloutRequest(id=rollout_id, action=action, reason=reason or ""))
    if output is OutputFormat.json:
        print_json(message_to_plain(rollout))
    else:
        sys.stdout.write(f"rollout {rollout.id}: {rollout.state} ({_counts_text(rollout)})\n")


@app.command("pause")
def pause(ctx: typer.Context, rollout_id: IdArg, output: OutputOpt = OutputFormat.table) -> None:
    """Stop sending to more devices; installs under way finish, timeouts and abort criteria still apply.

    Examples:
      $ edgectl rollout pause r-1a2b3c
    """
    _control(ctx, rollout_id, "pause", None, output)


@app.command("resume")
def resume(ctx: typer.Context, rollout_id: IdArg, output: OutputOpt = OutputFormat.table) -> None:
    """Carry on with a paused rollout.

    Examples:
      $ edgectl rollout resume r-1a2b3c
    """
    _control(ctx, rollout_id, "resume", None, output)


@app.command("abort")
def abort(
    ctx: typer.Context,
    rollout_id: IdArg,
    reason: Annotated[Optional[str], typer.Option("--reason", help="Why (kept with the rollout and sent in the rollback orders).", show_default=False)] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Stop the rollout and send every device it touched a signed rollback to its previous model.

    Examples:
      $ edgectl rollout abort r-1a2b3c --reason "latency regression on pi-4 boards"
    """
    _control(ctx, rollout_id, "abort", reason, output)
