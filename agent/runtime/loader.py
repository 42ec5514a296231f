"""Find the interpreter this device has: ai-edge-litert, else tflite_runtime, else full TensorFlow.

Resolved lazily and once: importing the runtime costs tens of megabytes and the agent imports this
package at start. TensorFlow is the last resort, imported only inside a function, because a device
with neither LiteRT package has nothing else (the agent never imports it at module level).
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from agent.distributions import version as dist_version  # not importlib.metadata: see agent.distributions
from agent.runtime.errors import RuntimeUnavailable

# (module to import, runtime name as reported in RuntimeInfo.name, distribution that carries its version)
_CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("ai_edge_litert.interpreter", "ai-edge-litert", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite_runtime", "tflite-runtime"),
    # `import tensorflow.lite` gives TF's internal package, not the public tf.lite API: take the attribute.
    ("tensorflow", "tensorflow.lite", "tensorflow"),
)


@dataclass(frozen=True)
class Runtime:
    interpreter: type
    load_delegate: Callable[..., Any]
    name: str
    version: str


def _version(distribution: str, module: ModuleType) -> str:
    found = dist_version(distribution)
    return found if found is not None else str(getattr(module, "__version__", "unknown"))


def _resolve(module_name: str, module: ModuleType) -> tuple[type, Callable[..., Any]]:
    if module_name == "tensorflow":
        lite = module.lite
        return lite.Interpreter, lite.experimental.load_delegate
    return module.Interpreter, module.load_delegate


@functools.cache
def runtime() -> Runtime:
    """The first importable runtime; raises RuntimeUnavailable listing why each one failed."""
    failures: list[str] = []
    for module_name, name, distribution in _CANDIDATES:
        try:
            module = importlib.import_module(module_name)
            interpreter, load = _resolve(module_name, module)
        except (ImportError, AttributeError) as exc:  # not installed, or a broken / unrelated install
            failures.append(f"{name}: {exc}")
            continue
        return Runtime(interpreter, load, name, _version(distribution, module))
    raise RuntimeUnavailable(
        "no TensorFlow Lite runtime found; install ai-edge-litert (pip install ai-edge-litert). Tried: "
        + "; ".join(failures)
    )


def interpreter_class() -> tuple[type, str, str]:
    """(Interpreter class, runtime name, runtime version) of the runtime this device uses."""
    rt = runtime()
    return rt.interpreter, rt.name, rt.version


def load_delegate(library: str, options: dict[str, str] | None = None) -> Any:
    """Load a TfLiteDelegate plugin through the runtime in use.

    Raises what the runtime raises: ValueError when the library has no delegate or refuses the options,
    OSError when the shared library cannot be found (ai-edge-litert 2.3 lets ctypes' OSError through).
    """
    return runtime().load_delegate(library, options)
