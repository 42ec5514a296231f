"""What a runtime plugin hands to the model loader: the interpreter settings and why they were chosen."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from agent.runtime import loader


class BackendUnavailable(Exception):
    """A plugin cannot run here; the message says why (it ends up in the agent's report)."""


@dataclass(frozen=True)
class Backend:
    key: str                                  # cpu | edgetpu | gpu
    runtime: loader.Runtime
    num_threads: int | None = None            # None: the runtime's default
    delegates: tuple[Any, ...] = ()
    delegate_library: str | None = None       # the shared library the delegate came from
    reason: str = ""                          # why not a better backend: "edgetpu: libedgetpu.so.1 not found; running on CPU"
    tried: tuple[str, ...] = field(default=())  # plugin keys tried, in order

    def interpreter_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.num_threads is not None:
            kwargs["num_threads"] = self.num_threads
        if self.delegates:
            kwargs["experimental_delegates"] = list(self.delegates)
        return kwargs

    def create_interpreter(self, model_path: Path | str) -> Any:
        """A new interpreter for the model; the runtime's own exceptions pass through."""
        return self.runtime.interpreter(model_path=str(model_path), **self.interpreter_kwargs())

    def describe(self) -> str:
        """One line for logs and the hardware report."""
        what = self.key if not self.delegate_library else f"{self.key} ({self.delegate_library})"
        text = f"{what} on {self.runtime.name} {self.runtime.version}"
        return f"{text}; {self.reason}" if self.reason else text


@contextlib.contextmanager
def _quiet_failed_delegate() -> Iterator[None]:
    """Silence one known upstream wart while a delegate load is attempted.

    ai-edge-litert 2.3's Delegate.__del__ reads self._library, which its __init__ never set when the
    library failed to open, so Python prints "Exception ignored in Delegate.__del__ ... AttributeError"
    on stderr. Only that exact report is dropped; everything else reaches the previous hook.
    """
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        obj = unraisable.object
        if (
            isinstance(unraisable.exc_value, AttributeError)
            and getattr(obj, "__qualname__", "") == "Delegate.__del__"
        ):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def describe_delegate_failure(library: str, exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    if isinstance(exc, OSError) and ("No such file" in message or "cannot open shared object" in message):
        return f"{library} not found"
    if isinstance(exc, OSError):
        return f"{library} could not be opened: {message}"
    if isinstance(exc, AttributeError) and "tflite_plugin_create_delegate" in message:
        return f"{library} is not a TensorFlow Lite delegate plugin (no tflite_plugin_create_delegate)"
    # The library opened but made no delegate: for libedgetpu that usually means no device is attached.
    return f"{library} gave no delegate: {message}"


def try_load_delegate(library: str, options: Mapping[str, str] | None = None) -> tuple[Any | None, str]:
    """(delegate, "") when the library loads, else (None, reason)."""
    with _quiet_failed_delegate():
        try:
            return loader.load_delegate(library, dict(options) if options else None), ""
        except Exception as exc:  # any failure means "run without it"; the reason says which
            reason = describe_delegate_failure(library, exc)
        # The failed Delegate is freed here, when `exc` goes, still inside the quiet block.
    return None, reason
