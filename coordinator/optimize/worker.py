"""The optimizer as a subprocess of the coordinator: JSON lines on stdout, TensorFlow kept out of the service.

    python -m coordinator.optimize.worker --model M --data D --workdir W [--recipe R] [--task T] [--spec S]
        [--size-limit BYTES]

stdout carries one JSON object per line: `{"event": "progress", "step", "done", "total"}`, one
`{"event": "variant", ...}` per finished row, then `{"event": "result", ...}` (the PipelineResult). Bad
input ends with `{"event": "error", "kind": "input", "message"}` and exit code 2; an unexpected failure
with `"kind": "internal"` and exit code 1. Everything TensorFlow prints goes to stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, TextIO


def _event_stream() -> TextIO:
    """A private copy of stdout for events; fd 1 then points at stderr, so that native libraries writing
    to stdout (the TFLite converter does) cannot corrupt the JSON lines."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coordinator.optimize.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--recipe", default="default", help="default | full | path to a recipe file")
    parser.add_argument("--task", choices=["classification", "regression"], default=None)
    parser.add_argument("--spec", type=Path, default=None, help="tuning search-space file")
    parser.add_argument("--size-limit", type=int, default=None, help="reject models larger than this many bytes")
    args = parser.parse_args(argv)

    out = _event_stream()

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event, default=str) + "\n")

    import coordinator.optimize  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
    from coordinator.optimize.errors import OptimizeInputError
    from coordinator.optimize.pipeline import run_pipeline

    recipe: str | Path = args.recipe if args.recipe in ("default", "full") else Path(args.recipe)
    try:
        result = run_pipeline(
            args.model, args.data, workdir=args.workdir, recipe=recipe, task=args.task,
            spec_path=args.spec, size_limit_bytes=args.size_limit, progress=emit,
        )
    except OptimizeInputError as exc:
        emit({"event": "error", "kind": "input", "message": str(exc)})
        return 2
    except Exception as exc:
        traceback.print_exc()
        emit({"event": "error", "kind": "internal", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    emit({"event": "result", **result.to_dict()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
