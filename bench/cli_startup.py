"""How fast edgectl starts: `edgectl --help` and `edgectl device list` against the bare interpreter.

    python bench/cli_startup.py                       # against a fake coordinator started here
    python bench/cli_startup.py --coordinator HOST:PORT --token TOKEN   # against a real one

Each command runs as a subprocess, 1 warm-up then --runs timed runs (interleaved, so drift hits all
commands alike); the median wall time is compared with `python -c pass` run by edgectl's own interpreter.
Target (issue 2): at most 0.6 s above the bare interpreter. When missed, look at
`python -X importtime -m coordinator.cli.app --help` for what got imported.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_S = 0.6


def find_edgectl() -> Path:
    beside = Path(sys.executable).parent / "edgectl"
    if beside.exists():
        return beside
    found = shutil.which("edgectl")
    if not found:
        sys.exit("bench: edgectl is not installed (pip install -e . in the venv you run this with)")
    return Path(found)


def script_interpreter(script: Path) -> str:
    """The interpreter in the console script's #! line, so the baseline is the same Python edgectl runs on."""
    first = script.read_bytes().split(b"\n", 1)[0].decode(errors="replace")
    if first.startswith("#!") and Path(first[2:].strip().split()[0]).exists():
        return first[2:].strip().split()[0]
    return sys.executable


def timed_run(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {result.returncode}): {result.stderr.decode(errors='replace').strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command (default 10)")
    parser.add_argument("--coordinator", help="HOST:PORT of a real coordinator (default: start a fake one here)")
    parser.add_argument("--token", help="admin token of that coordinator")
    args = parser.parse_args()
    if args.coordinator and not args.token:
        parser.error("--coordinator needs --token")

    edgectl = find_edgectl()
    python = script_interpreter(edgectl)
    server = None
    if args.coordinator:
        address, token, against = args.coordinator, args.token, f"the coordinator at {args.coordinator}"
    else:
        sys.path.insert(0, str(REPO / "tests" / "unit"))
        try:
            from cli_fake_server import start_fake_coordinator
        except ImportError as exc:
            sys.exit(f"bench: cannot start the fake coordinator ({exc}); run this with the project's venv python")
        token = "bench-admin-token"
        server, _, address = start_fake_coordinator(token)
        against = f"a fake coordinator in this process at {address}"

    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    env.update(EDGEFLEET_COORDINATOR=address, EDGEFLEET_TOKEN=token)
    commands = {
        "python -c pass": [python, "-c", "pass"],
        "edgectl --help": [str(edgectl), "--help"],
        "edgectl device list": [str(edgectl), "device", "list"],
    }
    try:
        for cmd in commands.values():
            timed_run(cmd, env)  # warm-up: page cache, .pyc files
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, cmd in commands.items():
                times[name].append(timed_run(cmd, env))
    finally:
        if server is not None:
            server.stop(grace=None)

    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["python -c pass"]
    print(f"edgectl start-up: median wall time of {args.runs} runs after 1 warm-up, against {against}")
    print(f"interpreter: {python}; target: at most {TARGET_S:.2f} s above the bare interpreter")
    print()
    print(f"{'command':<22}{'median s':>10}{'min s':>9}{'max s':>9}{'above bare s':>14}{'x bare':>8}  result")
    failed = False
    for name, median in medians.items():
        lo, hi = min(times[name]), max(times[name])
        if name == "python -c pass":
            print(f"{name:<22}{median:>10.3f}{lo:>9.3f}{hi:>9.3f}{'-':>14}{1.0:>8.1f}  baseline")
            continue
        above = median - base
        ok = above <= TARGET_S
        failed |= not ok
        print(f"{name:<22}{median:>10.3f}{lo:>9.3f}{hi:>9.3f}{above:>14.3f}{median / base:>8.1f}  {'PASS' if ok else 'MISS'}")
    if failed:
        print("\nMISS: profile with: python -X importtime -m coordinator.cli.app --help 2>&1 | sort -t'|' -k2 -n | tail")


if __name__ == "__main__":
    main()
