"""Will a new model fit? Checked before a download starts, so a device that is short of space
fails cleanly with the figures instead of filling its disk with half a model."""
from __future__ import annotations

import shutil
from pathlib import Path

# Room left for the ledger, the outbox and the logs after the model is in.
DEFAULT_HEADROOM_BYTES = 1024 * 1024


def space_problem(
    *,
    needed: int,
    state_dir: Path,
    kept_bytes: int,
    reclaimable_bytes: int,
    budget_bytes: int | None,
    headroom_bytes: int = DEFAULT_HEADROOM_BYTES,
) -> str | None:
    """Why `needed` more bytes do not fit, or None when they do.

    kept_bytes: what stays on disk (the active slot); reclaimable_bytes: what the install may delete
    first (the inactive slot and stale downloads). The budget bounds kept + needed; free space on the
    state directory's filesystem (plus what can be reclaimed) must hold needed + headroom.
    """
    if budget_bytes is not None and kept_bytes + needed > budget_bytes:
        return (f"storage budget too small: the new model needs {needed} bytes next to the active model's "
                f"{kept_bytes} bytes, and the budget is {budget_bytes} bytes")
    try:
        free = shutil.disk_usage(state_dir).free
    except OSError as exc:
        return f"cannot read the free space of {state_dir}: {exc.strerror or exc}"
    if needed + headroom_bytes > free + reclaimable_bytes:
        return (f"not enough free storage in {state_dir}: the new model needs {needed} bytes (+{headroom_bytes} "
                f"headroom), {free} bytes are free and {reclaimable_bytes} could be reclaimed")
    return None
