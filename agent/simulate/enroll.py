"""Enroll many simulated devices from one process: the Enrollment gRPC call per device, a few at a time.

    enroll_fleet("127.0.0.1:7400", {("cam-1", "raspberry-pi-4"): token1, ("gw-1", "x86-gateway"): token2}, fleet_dir)

Each device gets `<fleet dir>/<name>/` with its identity.json (agent.enroll.enroll, as `edge-agent enroll`)
and a `profile` file naming its profile, so `edge-agent simulate --fleet-dir` finds it. The host is
probed once and each profile applied to that probe (every simulated device runs on this host).

Tickets file (`edge-agent simulate --enroll-from FILE`), either JSON:
    [{"name": "cam-1", "profile": "raspberry-pi-4", "token": "..."}, ...]      ("enrollment_token" works too)
or text, one device per line, blank lines and # comments ignored:
    cam-1  raspberry-pi-4  <token>
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from agent.enroll import EnrollError, enroll
from agent.identity import Identity, StateDirError, prepare_state_dir
from agent.profile import ProfileError, load_profile
from agent.simulate.fleet_dir import write_profile
from agent.simulate.runtime import HostHardware
from edgefleet.labels import LabelError, check_name

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 8


class FleetEnrollError(RuntimeError):
    """Some devices could not be enrolled (the others were); the message names each and why."""

    def __init__(self, message: str, enrolled: list[Identity]) -> None:
        super().__init__(message)
        self.enrolled = enrolled


@dataclass(frozen=True)
class Ticket:
    name: str
    profile: str
    token: str


def read_tickets(path: Path) -> list[Ticket]:
    """Tickets from a JSON or text file (see the module docstring); raises ValueError naming the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read enrollment file {path}: {exc.strerror or exc}") from None
    if text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"enrollment file {path} is not valid JSON: {exc}") from None
        items = data if isinstance(data, list) else [data]
        tickets = []
        for i, item in enumerate(items):
            token = item.get("token") or item.get("enrollment_token") if isinstance(item, dict) else None
            if not (isinstance(item, dict) and item.get("name") and item.get("profile") and token):
                raise ValueError(f"enrollment file {path}: entry {i} needs name, profile and token")
            tickets.append(Ticket(str(item["name"]), str(item["profile"]), str(token)))
        return tickets
    tickets = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"enrollment file {path} line {number}: expected NAME PROFILE TOKEN, got {len(parts)} field(s)")
        tickets.append(Ticket(*parts))
    return tickets


def _tickets(tokens: Mapping[tuple[str, str], str] | Iterable[Ticket]) -> list[Ticket]:
    if isinstance(tokens, Mapping):
        return [Ticket(name, profile, token) for (name, profile), token in tokens.items()]
    return list(tokens)


def enroll_fleet(
    coordinator: str,
    tokens: Mapping[tuple[str, str], str] | Iterable[Ticket],
    fleet_dir: Path,
    *,
    workers: int = DEFAULT_WORKERS,
    force: bool = False,
    timeout_s: float = 15.0,
) -> list[Identity]:
    """Enroll every device (`{(name, profile): token}` or Tickets) under `fleet_dir`; their identities, in order.

    Names and profiles are checked before anything is sent (ValueError / ProfileError). Raises
    FleetEnrollError after trying every device when some could not be enrolled (`.enrolled` has the
    others). A device directory already enrolled is refused unless `force`.
    """
    tickets = _tickets(tokens)
    names = [t.name for t in tickets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"device names given twice: {', '.join(duplicates)}")
    for ticket in tickets:
        try:
            check_name(ticket.name)
        except LabelError as exc:
            raise ValueError(f"device {ticket.name!r}: {exc}") from None
    for profile in sorted({t.profile for t in tickets}):
        load_profile(profile)  # ProfileError names the profile and the problem
    fleet_dir = prepare_state_dir(Path(fleet_dir))
    hardware = HostHardware(fleet_dir)

    def one(ticket: Ticket) -> Identity | str:
        try:
            state_dir = prepare_state_dir(fleet_dir / ticket.name)
            ident = enroll(coordinator, ticket.token, state_dir, hardware.profile(ticket.profile), force=force, timeout_s=timeout_s)
            write_profile(state_dir, ticket.profile)
            return ident
        except (EnrollError, StateDirError, ProfileError, OSError) as exc:
            return f"{ticket.name}: {exc}"

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="enroll") as pool:
        results = list(pool.map(one, tickets))
    enrolled = [r for r in results if isinstance(r, Identity)]
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        shown = "; ".join(failures[:5]) + (f"; and {len(failures) - 5} more" if len(failures) > 5 else "")
        raise FleetEnrollError(f"{len(failures)} of {len(tickets)} devices could not be enrolled: {shown}", enrolled)
    log.info("enrolled %d devices under %s", len(enrolled), fleet_dir)
    return enrolled
