"""The Coral Edge TPU through libedgetpu's TfLiteDelegate.

Only tried when the hardware profile lists an Edge TPU: loading the library opens the device, and on a
machine without one it would only add a failure to the report. Options go to the delegate as is
(libedgetpu understands {"device": "usb" | "usb:0" | "pci:0"}).
"""

from __future__ import annotations

import platform
from typing import Collection, Mapping

from agent.runtime import loader
from agent.runtime.backend import Backend, BackendUnavailable, try_load_delegate

KEY = "edgetpu"

# Names from Coral's docs (coral.ai/docs/edgetpu/tflite-python): one per OS.
_LIBRARIES = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}


def library_name() -> str:
    return _LIBRARIES.get(platform.system(), _LIBRARIES["Linux"])


def create(
    accelerators: Collection[str], num_threads: int | None = None, options: Mapping[str, str] | None = None
) -> Backend:
    if KEY not in accelerators:
        raise BackendUnavailable("no Edge TPU in the hardware profile")
    library = library_name()
    delegate, reason = try_load_delegate(library, options)
    if delegate is None:
        raise BackendUnavailable(reason)
    # Ops the Edge TPU compiler left out still run on the CPU, so the thread count still matters.
    return Backend(key=KEY, runtime=loader.runtime(), num_threads=num_threads,
                   delegates=(delegate,), delegate_library=library)
