"""Devices as JSON objects and as tables: what `edgectl device list|show|register` print."""
from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import Any

from rich.table import Table

from coordinator.cli.output import (
    enum_word,
    human_bytes,
    message_to_plain,
    new_table,
    print_table,
    relative_age,
    timestamp_iso,
)

# Filled only by GetDevice; left out of list output so an empty list there does not read as "no history".
_DETAIL_ONLY = ("hardware_history", "model_history", "latest_telemetry")


def device_to_plain(device: Any, *, detail: bool = False) -> dict[str, Any]:
    """A device for `-o json`. `hardware` is always a complete object (empty strings and zeros until the
    agent has reported), so that scripts can read `hardware.cpu.arch` or `hardware.accelerators` directly."""
    plain = message_to_plain(device)
    plain["hardware"] = message_to_plain(device.hardware, fill_unset=True)
    if not detail:
        for key in _DETAIL_ONLY:
            plain.pop(key, None)
    return plain


def state_word(device: Any) -> str:
    return enum_word(device.DESCRIPTOR.fields_by_name["state"].enum_type, device.state)


def labels_text(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def accelerators_text(hardware: Any) -> str:
    return ",".join(f"{a.kind}({a.bus})" if a.bus else a.kind for a in hardware.accelerators) or "-"


def runtime_text(hardware: Any) -> str:
    runtime = hardware.runtime
    if not runtime.name:
        return "-"
    return f"{runtime.name} {runtime.version}".strip()


def device_table(devices: Any, now: datetime | None = None) -> Table:
    now = now or datetime.now(timezone.utc)
    table = new_table("NAME", "ID", "STATE", "LAST SEEN", "CLASS", "ARCH", "CORES", "MEM", "ACCEL", "RUNTIME", "LABELS")
    for d in devices:
        hw = d.hardware
        has_hw = d.HasField("hardware")
        table.add_row(
            d.name,
            d.id,
            state_word(d),
            relative_age(d.last_seen, now),
            (hw.hardware_class or "-") if has_hw else "-",
            (hw.cpu.arch or "-") if has_hw else "-",
            str(hw.cpu.cores_logical) if has_hw and hw.cpu.cores_logical else "-",
            human_bytes(hw.memory.total_bytes) if has_hw else "-",
            accelerators_text(hw) if has_hw else "-",
            runtime_text(hw) if has_hw else "-",
            labels_text(d.labels),
        )
    return table


def print_device_table(devices: Any, now: datetime | None = None) -> None:
    if not devices:
        sys.stderr.write("No devices found.\n")
        return
    print_table(device_table(devices, now))


def _kv_table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def _when(ts: Any, now: datetime) -> str:
    iso = timestamp_iso(ts)
    return f"{iso} ({relative_age(ts, now)})" if iso else "-"


def print_device_details(device: Any, now: datetime | None = None) -> None:
    now = now or datetime.now(timezone.utc)
    d = device
    model = d.active_model
    rows = [
        ("Name", d.name),
        ("ID", d.id),
        ("State", state_word(d)),
        ("Last seen", _when(d.last_seen, now)),
        ("Created", _when(d.created_at, now)),
        ("Enrolled", _when(d.enrolled_at, now)),
        ("Agent", d.agent_version or "-"),
        ("Labels", labels_text(d.labels)),
        ("Model", f"{model.model}:{model.version} variant {model.variant_id}" if model.model else "-"),
    ]
    _section("Device", _kv_table(rows))

    if d.HasField("hardware"):
        _section("Hardware", _kv_table(hardware_rows(d.hardware)))
    else:
        _section("Hardware", _kv_table([("", "not reported yet (the agent has not connected)")]))

    if d.hardware_history:
        table = new_table("AT", "CLASS", "CHANGED")
        for change in d.hardware_history:
            table.add_row(_when(change.at, now), change.hardware.hardware_class or "-", ", ".join(change.changed) or "first report")
        _section("Hardware history", table)

    if d.model_history:
        table = new_table("AT", "MODEL", "VARIANT", "STATE", "ROLLOUT", "REASON")
        for entry in d.model_history:
            table.add_row(
                _when(entry.at, now),
                f"{entry.model.model}:{entry.model.version}" if entry.model.model else "-",
                entry.model.variant_id or "-",
                enum_word(entry.DESCRIPTOR.fields_by_name["state"].enum_type, entry.state),
                entry.rollout_id or "-",
                entry.reason or "-",
            )
        _section("Model history", table)

    if d.HasField("latest_telemetry"):
        _section("Latest telemetry", _kv_table(telemetry_rows(d.latest_telemetry)))


def _section(title: str, body: Table) -> None:
    sys.stdout.write(f"{title}:\n")
    print_table(body)
    sys.stdout.write("\n")


def hardware_rows(hw: Any) -> list[tuple[str, str]]:
    cpu, mem, disk, os_ = hw.cpu, hw.memory, hw.storage, hw.os
    freq = f", {cpu.max_freq_mhz:.0f} MHz" if cpu.max_freq_mhz else ""
    rows = [
        ("Class", hw.hardware_class or "-"),
        ("Profile", (hw.profile_name or "probed") + (" (simulated)" if hw.simulated else "")),
        ("CPU", f"{cpu.arch or '?'}, {cpu.cores_logical} logical / {cpu.cores_physical} physical cores{freq}"),
        ("CPU model", cpu.model or "-"),
        ("CPU features", ", ".join(cpu.features) or "-"),
        ("Memory", f"{human_bytes(mem.total_bytes)} total, {human_bytes(mem.available_bytes)} available"),
        ("Storage", f"{human_bytes(disk.free_bytes)} free of {human_bytes(disk.total_bytes)} at {disk.path or '-'}"),
        ("OS", " ".join(x for x in (os_.distro or os_.system, os_.kernel) if x) or "-"),
        ("Hostname", os_.hostname or "-"),
        ("Runtime", runtime_text(hw) + (f" (delegates: {', '.join(hw.runtime.delegates)})" if hw.runtime.delegates else "")),
    ]
    for acc in hw.accelerators:
        text = f"{acc.kind} {acc.name or ''} [{acc.bus or '?'} {acc.id or ''}]".replace("  ", " ")
        rows.append(("Accelerator", text + (f": {acc.detail}" if acc.detail else "")))
    if not hw.accelerators:
        rows.append(("Accelerator", "-"))
    for src in hw.power_sources:
        rows.append(("Power", f"{src.kind} {src.name} {src.path}" + ("" if src.readable else " (not readable)")))
    if hw.simulated and hw.latency_factor:
        rows.append(("Latency factor", f"{hw.latency_factor:g}x the host"))
    if hw.overridden:
        rows.append(("Overridden", ", ".join(hw.overridden)))
    return rows


def telemetry_rows(t: Any) -> list[tuple[str, str]]:
    rows = [
        ("Model", f"{t.model}:{t.version} variant {t.variant_id}" if t.model else "-"),
        ("Requests", f"{t.requests} ({t.errors} errors), {t.inferences_per_s:.1f}/s"),
        ("Latency", f"p50 {t.p50_ms:.2f} ms, p95 {t.p95_ms:.2f} ms, p99 {t.p99_ms:.2f} ms"),
    ]
    if t.HasField("power"):
        rows.append(("Power", f"{t.power.avg_watts:.2f} W, {t.power.energy_per_inference_mj:.2f} mJ/inference ({t.power.source})"))
    if t.HasField("accuracy"):
        a = t.accuracy
        golden = f"golden {a.golden_metric:.3f} (n={a.golden_count})" if a.golden_count else "golden -"
        online = f"online {a.online_metric:.3f} (n={a.online_count})" if a.online_count else "online -"
        rows.append(("Accuracy", f"{golden}, {online}, confidence {a.mean_confidence:.2f}"))
    if t.HasField("drift"):
        rows.append(("Drift", f"{t.drift.method} max {t.drift.max_score:.3f} over {t.drift.samples} samples"))
    return rows


def print_registration(response: Any) -> None:
    """What an operator needs after `device register`: the id, the expiry, and the command to run."""
    d = response.device
    expires = timestamp_iso(response.token_expires_at) or "never"
    age = relative_age(response.token_expires_at, never="")
    sys.stdout.write(
        f"device {d.name} registered, id {d.id}\n"
        f"enrollment token expires {expires}{f' ({age})' if age else ''}; it works once\n"
        "run this on the device:\n"
        "\n"
        f"  {response.enroll_command}\n"
    )
