"""A GPU through TensorFlow Lite's GPU delegate (OpenCL / OpenGL ES), when the device reports a GPU.

No pip package ships this delegate for Linux; it is built from tensorflow/lite/delegates/gpu or comes
with the board's BSP, so the library names are a list that configuration can replace.
"""

from __future__ import annotations

from typing import Collection, Mapping, Sequence

from agent.runtime import loader
from agent.runtime.backend import Backend, BackendUnavailable, try_load_delegate

KEY = "gpu"

# The Bazel target //tensorflow/lite/delegates/gpu:libtensorflowlite_gpu_delegate.so, then the name
# some vendor images install it under.
DEFAULT_LIBRARIES: tuple[str, ...] = ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so")


def create(
    accelerators: Collection[str],
    num_threads: int | None = None,
    options: Mapping[str, str] | None = None,
    libraries: Sequence[str] = DEFAULT_LIBRARIES,
) -> Backend:
    if KEY not in accelerators:
        raise BackendUnavailable("no GPU in the hardware profile")
    reasons = []
    for library in libraries:
        delegate, reason = try_load_delegate(library, options)
        if delegate is not None:
            return Backend(key=KEY, runtime=loader.runtime(), num_threads=num_threads,
                           delegates=(delegate,), delegate_library=library)
        reasons.append(reason)
    raise BackendUnavailable(", ".join(reasons) if reasons else "no GPU delegate library configured")
