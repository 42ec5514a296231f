"""On-device profiling of a candidate model in a child process of its own.

A separate process makes peak RSS the model's (plus the runtime's baseline, reported alongside), keeps
a model that crashes the runtime from taking the agent down, and leaves the active model untouched.
The child is `python -m agent.runtime.profiling '<json request>'`; it prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from agent.runtime.errors import ModelLoadError, ProfilingFailed


def profile(
    path: Path | str,
    *,
    accelerators: Sequence[str] = (),
    preferred: str | None = None,
    requires_delegate: str | None = None,
    num_threads: int | None = None,
    runs: int = 50,
    warmup: int = 5,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Load and benchmark `path` in a child process.

    Returns load_ms, p50_ms, p95_ms, mean_ms, peak_rss_bytes, baseline_rss_bytes (peak RSS with the
    runtime imported, before the model), backend (key) and backend_reason. Raises ModelLoadError when
    the runtime refuses the model, ProfilingFailed when the child crashes or exceeds `timeout`.
    """
    request = {"path": str(path), "accelerators": list(accelerators), "preferred": preferred,
               "requires_delegate": requires_delegate, "num_threads": num_threads, "runs": runs, "warmup": warmup}
    try:
        result = subprocess.run([sys.executable, "-m", "agent.runtime.profiling", json.dumps(request)],
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise ProfilingFailed(f"profiling {Path(path).name} took longer than {timeout:g} s") from exc
    lines = result.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        answer = None
    if result.returncode != 0 or not isinstance(answer, dict):
        tail = " ".join(result.stderr.strip().splitlines()[-3:])
        raise ProfilingFailed(f"profiling {Path(path).name} failed (exit code {result.returncode}): {tail}")
    if not answer.get("ok"):
        raise ModelLoadError(answer.get("error", "unknown error"))
    answer.pop("ok")
    return answer


def _child(request: dict[str, Any]) -> dict[str, Any]:
    from agent.runtime.model import LoadedModel, peak_rss_bytes
    from agent.runtime.plugins import select_backend

    backend = select_backend(request["accelerators"], request["preferred"], request["requires_delegate"],
                             num_threads=request["num_threads"])
    baseline = peak_rss_bytes()
    try:
        model = LoadedModel.load(request["path"], backend)
    except ModelLoadError as exc:
        return {"ok": False, "error": str(exc)}
    figures = model.benchmark(runs=request["runs"], warmup=request["warmup"])
    return {"ok": True, **figures, "baseline_rss_bytes": baseline, "backend": backend.key,
            "backend_reason": backend.reason}


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))), flush=True)
