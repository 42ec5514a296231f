"""Inference runtime: which LiteRT/TFLite interpreter is installed, its version, and loadable delegates.

Order: ai-edge-litert, else tflite_runtime, else tensorflow.lite, else "none". Found with
importlib.util.find_spec and the installed metadata only (agent.distributions): nothing is imported, so
probing a host that has TensorFlow installed does not pay for (or drag in) TensorFlow.

Delegates: "xnnpack" whenever a runtime exists (it is built into all three); "edgetpu" when
libedgetpu.so.1 is loadable by name; "gpu" when the TFLite GPU delegate library is. No runtime,
no delegates: a delegate needs an interpreter to load into.
"""
from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Callable

from agent import distributions
from edgefleet.v1.hardware_pb2 import RuntimeInfo

log = logging.getLogger(__name__)

# The dynamic loader's cache: find_library's ldconfig answers from it, and installing a library
# rewrites it (ldconfig runs after every package install).
LD_CACHE = Path("/etc/ld.so.cache")
_found: dict[str, tuple[tuple[int, int, int], str | None]] = {}


def ask_loader(base: str) -> str | None:
    """ctypes.util.find_library(base), asked again only once the loader's cache changed.

    The hardware is probed again on every hello; find_library runs ldconfig (and maybe gcc) in a
    subprocess each time, and importing ctypes.util keeps it, subprocess's helpers and tempfile in
    the daemon for its life, so it is imported here, when first needed."""
    try:
        st = LD_CACHE.stat()
        stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None  # no cache to watch (macOS, musl): ask every time
    cached = _found.get(base)
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1]
    import ctypes.util

    answer = ctypes.util.find_library(base)
    if stamp is not None:
        _found[base] = (stamp, answer)
    return answer


# Looked up through module globals at call time, so tests can monkeypatch them.
find_spec: Callable[[str], object | None] = importlib.util.find_spec
find_library: Callable[[str], str | None] = ask_loader


def dist_version(dist: str) -> str | None:
    return distributions.version(dist)  # importlib.metadata's answer, without keeping it resident


# (runtime name, top-level module, distributions that may provide it). The module is checked
# first: a distribution whose files were removed does not count.
RUNTIMES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ai-edge-litert", "ai_edge_litert", ("ai-edge-litert", "ai-edge-litert-nightly")),
    ("tflite_runtime", "tflite_runtime", ("tflite-runtime", "tflite_runtime")),
    ("tensorflow.lite", "tensorflow", ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64", "tf-nightly", "intel-tensorflow")),
)

# Where dynamic loaders look by default on the boards we target (Debian multiarch, Homebrew).
LIB_DIRS: tuple[Path, ...] = tuple(
    Path(d)
    for d in (
        "/usr/lib", "/usr/local/lib", "/lib",
        "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
        "/usr/lib/arm-linux-gnueabihf", "/lib/arm-linux-gnueabihf",
        "/opt/homebrew/lib",
    )
)

# (delegate, library base name for find_library, file names to look for in LIB_DIRS)
DELEGATE_LIBS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("edgetpu", "edgetpu", ("libedgetpu.so.1", "libedgetpu.1.dylib")),
    # The classic TFLite GPU delegate. ai-edge-litert's libLiteRtWebGpuAccelerator.so is not counted:
    # it serves the CompiledModel API, not Interpreter.load_delegate, and ships on hosts with no GPU.
    ("gpu", "tensorflowlite_gpu_delegate", ("libtensorflowlite_gpu_delegate.so",)),
)


def detect_runtime() -> RuntimeInfo:
    for name, module, dists in RUNTIMES:
        spec = _spec(module)
        if spec is None:
            continue
        if module == "tensorflow" and not _has_lite(spec):
            continue
        version = next((v for d in dists if (v := dist_version(d))), "")
        info = RuntimeInfo(name=name, version=version)
        info.delegates.append("xnnpack")
        info.delegates.extend(d for d, lib, files in DELEGATE_LIBS if library_available(lib, files))
        return info
    return RuntimeInfo(name="none")


def _spec(module: str) -> object | None:
    try:
        return find_spec(module)
    except (ImportError, ValueError):  # a broken install: treat as absent
        log.debug("find_spec(%r) failed", module, exc_info=True)
        return None


def _has_lite(spec: object) -> bool:
    # find_spec("tensorflow.lite") would import tensorflow itself; look for the subpackage on disk.
    locations = getattr(spec, "submodule_search_locations", None) or ()
    return any(os.path.isdir(os.path.join(loc, "lite")) for loc in locations)


def library_available(base: str, files: tuple[str, ...]) -> bool:
    """True when a file of that name is in a standard lib dir, or the loader can find it by name."""
    for directory in LIB_DIRS:
        for file in files:
            try:
                if (directory / file).exists():
                    return True
            except OSError:
                continue
    # Last because find_library runs ldconfig (and maybe gcc) in a subprocess.
    try:
        return find_library(base) is not None
    except Exception:
        log.debug("find_library(%r) failed", base, exc_info=True)
        return False
