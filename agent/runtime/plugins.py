"""The runtime plugins by key, and the choice among them for one model on this device."""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Collection, Mapping

from agent.runtime import cpu, edgetpu, gpu
from agent.runtime.backend import Backend, BackendUnavailable

PLUGINS: dict[str, ModuleType] = {module.KEY: module for module in (cpu, edgetpu, gpu)}


def _order(accelerators: Collection[str], preferred: str | None, requires_delegate: str | None) -> tuple[list[str], list[str]]:
    """(plugin keys to try, notes on accelerators deliberately left unused)."""
    notes: list[str] = []
    if requires_delegate:
        # The model was compiled for this delegate: nothing else can stand in for it but the CPU.
        order = [requires_delegate]
    elif preferred:
        order = [preferred]
    else:
        # Automatic: a GPU when there is one. The Edge TPU only runs models compiled for it; any other
        # model would run entirely on the CPU while holding the device, so it is not picked by itself.
        order = ["gpu"] if "gpu" in accelerators else []
        if "edgetpu" in accelerators:
            notes.append("edgetpu: the model is not compiled for the Edge TPU")
    if "cpu" not in order:
        order.append("cpu")
    return order, notes


def select_backend(
    accelerators: Collection[str],
    preferred: str | None = None,
    requires_delegate: str | None = None,
    *,
    num_threads: int | None = None,
    delegate_options: Mapping[str, Mapping[str, str]] | None = None,
) -> Backend:
    """The first backend that works, in this order: the delegate the model requires (manifest
    `requires_delegate`), else the configured preference, else a GPU the profile reports; then the CPU.

    `accelerators` are the kinds in the hardware profile ("edgetpu", "gpu"). The result's `reason` says
    why a better one was not used, e.g. "edgetpu: libedgetpu.so.1 not found; running on CPU".
    Raises ValueError for an unknown `preferred` key (a configuration mistake); an unknown
    `requires_delegate` (a model from a newer coordinator) falls back to the CPU with the reason.
    """
    if preferred and preferred not in PLUGINS:
        raise ValueError(f"unknown runtime backend {preferred!r}; known: {', '.join(sorted(PLUGINS))}")
    order, failures = _order(accelerators, preferred, requires_delegate)
    tried: list[str] = []
    for key in order:
        tried.append(key)
        plugin = PLUGINS.get(key)
        if plugin is None:
            failures.append(f"{key}: no runtime plugin for this delegate in this agent")
            continue
        options = (delegate_options or {}).get(key)
        try:
            backend = plugin.create(accelerators, num_threads, options)
        except BackendUnavailable as exc:
            failures.append(f"{key}: {exc}")
            continue
        reason = "; ".join(failures)
        if reason:
            reason += f"; running on {'CPU' if key == 'cpu' else key}"
        return dataclasses.replace(backend, reason=reason, tried=tuple(tried))
    raise AssertionError("the CPU plugin never refuses")  # pragma: no cover
