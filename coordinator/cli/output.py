"""How edgectl prints: `-o json` (plain JSON built from protobuf messages) and `-o table` (rich tables).

The JSON converter differs from protobuf's MessageToDict on purpose: 64-bit integers stay numbers, enums
are short lower-case words (DEVICE_STATE_ONLINE → "online"), unset messages and timestamps are null, and
keys are the proto field names. Scripts read this output, so its shape is part of edgectl's interface.
"""
from __future__ import annotations

import base64
import enum
import json
import re
import sys
from datetime import datetime, timezone
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table


class OutputFormat(str, enum.Enum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people, json for scripts.", case_sensitive=False),
]

# ---------------------------------------------------------------- protobuf → plain Python (for JSON)

_TIMESTAMP = "google.protobuf.Timestamp"


def message_to_plain(message: Any, *, fill_unset: bool = False) -> dict[str, Any]:
    """A protobuf message as a dict of JSON-ready values, every field present (proto field names).

    An unset message field is null, unless fill_unset: then it is an object of default values, so that a
    script can index into it without checking (timestamps stay null when unset either way).
    """
    out: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {key: _value(value_field, item, fill_unset) for key, item in sorted(value.items())}
        elif field.is_repeated:
            out[field.name] = [_value(field, item, fill_unset) for item in value]
        elif field.message_type is not None and not fill_unset and not message.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value, fill_unset)
    return out


def _value(field: Any, value: Any, fill_unset: bool) -> Any:
    if field.message_type is not None:
        if field.message_type.full_name == _TIMESTAMP:
            return timestamp_iso(value)
        return message_to_plain(value, fill_unset=fill_unset)
    if field.enum_type is not None:
        return enum_word(field.enum_type, value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def enum_word(enum_type: Any, number: int) -> str:
    """DEVICE_STATE_ONLINE of enum DeviceState → "online"; UNSPECIFIED → "unknown"."""
    value = enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum_type.name).upper() + "_"
    word = value.name.removeprefix(prefix).lower()
    return "unknown" if word == "unspecified" else word


# ---------------------------------------------------------------- time and size words


def timestamp_datetime(ts: Any) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime; None for the unset (zero) timestamp."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=timezone.utc)


def timestamp_iso(ts: Any) -> str | None:
    moment = timestamp_datetime(ts)
    if moment is None:
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def relative_age(ts: Any, now: datetime | None = None, *, never: str = "never") -> str:
    """"12s ago", "5m ago", "3h ago", "2d ago"; "in 5m" for the future."""
    moment = timestamp_datetime(ts)
    if moment is None:
        return never
    now = now or datetime.now(timezone.utc)
    seconds = (now - moment).total_seconds()
    span = _span(abs(seconds))
    return f"{span} ago" if seconds >= 0 else f"in {span}"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400 * 2:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def human_bytes(count: int) -> str:
    if count <= 0:
        return "-"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # unreachable


# ---------------------------------------------------------------- printing


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def console() -> Console:
    """stdout console: markup off (device names and labels are data), never cropping or wrapping a row.

    Like kubectl, a row longer than the terminal is left for the terminal to wrap: a column squeezed to
    nothing (rich's default on a narrow terminal) would hide names, and pipes (grep, awk) need whole rows.
    """
    return Console(highlight=False, markup=False, width=100_000)


def new_table(*headers: str) -> Table:
    """A kubectl-style table: no borders, bold headers, two spaces between columns."""
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold", padding=(0, 2, 0, 0))
    for header in headers:
        table.add_column(header, no_wrap=True, overflow="ellipsis")
    return table


def print_table(table: Table) -> None:
    out = console()
    with out.capture() as captured:
        out.print(table)
    # rich pads every line to the table width; trailing blanks are noise in pipes and diffs.
    sys.stdout.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
