"""LiteRT on the CPU. XNNPACK comes with the runtime's default op resolver, so no delegate is loaded here;
`num_threads` reaches both the interpreter and XNNPACK."""

from __future__ import annotations

from typing import Collection, Mapping

from agent.runtime import loader
from agent.runtime.backend import Backend

KEY = "cpu"


def create(
    accelerators: Collection[str], num_threads: int | None = None, options: Mapping[str, str] | None = None
) -> Backend:
    if num_threads is not None and num_threads < 1:
        raise ValueError(f"num_threads must be at least 1 (or None for the runtime's default), got {num_threads}")
    return Backend(key=KEY, runtime=loader.runtime(), num_threads=num_threads)
