"""A Predict that a fast-socket connection repeats: parsed, checked and planned once, then run on new data.

An app in a hot loop sends the same request frame every call: its tensors name the same slices of its
shared-memory region, whose contents it rewrote in between. Parsing that frame, decoding and checking its
tensors and building a protobuf response cost more than the interpreter call of a small model. So the
fast socket (agent.serve.fast) keeps each connection's last Predict body; when the next one is byte for
byte the same and names only shared memory, it builds a `Plan` and runs later repeats through it:

- the inputs are the region's bytes seen as arrays (views, checked once against the model: names,
  shapes, dtypes); an input the model converts (a float image for an int8 model) is converted again
  on every call, from the region's current bytes;
- the response is assembled from encoded parts kept in the plan (the model field, each output's head),
  byte for byte what `PredictResponse(...).SerializeToString()` gives;
- everything else is the same as a first request: the waiting line, the lease on the active model,
  telemetry, drift, the memory of recent predictions for Feedback, the failure count behind Health.

A plan is used only while the model it was checked against is the active one; the connection drops it
when it registers or unregisters a region (its arrays are views of a region) and when it closes. A
request that differs from the plan's takes the general path. Requests carrying tensor bytes never get a
plan (their bodies differ every call).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from agent.client import delimited, varint
from agent.serve.wire import dtype_name, wire_bytes

if TYPE_CHECKING:
    from agent.serve.host import ServedModel
    from agent.runtime.tensors import TensorBinding

# Bodies up to this size are remembered to spot a repeat (a request naming shared slices is ~60 bytes a
# tensor; one carrying its bytes is larger and never repeats usefully).
MAX_PLAN_BODY = 1024
_DOUBLE = struct.Struct("<d")
_LATENCY_TAG = b"\x21"  # PredictResponse.latency_ms: field 4, fixed 64-bit


class Plan:
    """What a repeated request needs: see the module doc. Built by InferenceServicer.prepare."""

    __slots__ = ("body", "served", "inputs", "fixed", "convert", "outputs_to", "_model_field", "_heads")

    def __init__(self, body: bytes, served: ServedModel, inputs: dict[str, np.ndarray], prepared: Mapping[int, np.ndarray],
                 bindings: Mapping[int, TensorBinding], outputs_to: Any = None) -> None:
        """`inputs`: the decoded arrays (views of the regions) by name; `prepared`: what the model's
        prepare() made of them, by tensor index; `bindings`: the model's input bindings by index."""
        self.body = body
        self.served = served
        self.inputs = inputs
        # An input the model takes as sent stays a view of the region: its array is reused as it is. One
        # the model converts (quantizes, casts) is a copy: it is converted again from the view each call.
        self.fixed: dict[int, np.ndarray] = {}
        self.convert: list[tuple[int, TensorBinding, np.ndarray]] = []
        for index, array in prepared.items():
            binding = bindings[index]
            source = inputs.get(binding.name)
            if source is not None and not np.may_share_memory(array, source):
                self.convert.append((index, binding, source))
            else:
                self.fixed[index] = array
        self.outputs_to = outputs_to  # the request's SharedSlice for outputs, or None
        self._model_field = delimited(0x1A, served.active.SerializeToString())  # PredictResponse.model
        self._heads: dict[tuple[str, tuple[int, ...], np.dtype], bytes] = {}

    def arrays(self) -> dict[int, np.ndarray]:
        """The interpreter's inputs for this call; converted ones from the region's current bytes (raises
        InvalidInput as a first request would, e.g. NaN for a quantized input)."""
        if not self.convert:
            return self.fixed
        arrays = dict(self.fixed)
        for index, binding, source in self.convert:
            arrays[index] = binding.prepare(source)
        return arrays

    def outputs_field(self, outputs: Mapping[str, np.ndarray]) -> bytes:
        """PredictResponse.outputs, encoded: each output's bytes in its Tensor (the reply carries them)."""
        encoded = b""
        for name, array in outputs.items():
            key = (name, array.shape, array.dtype)
            head = self._heads.get(key)
            if head is None:
                head = self._heads[key] = _output_head(name, array)
            encoded += head + wire_bytes(array)
        return encoded

    def response(self, request_id: str, latency_ms: float, outputs: bytes) -> bytes:
        """The PredictResponse's bytes (fields in number order, as protobuf writes them)."""
        latency = _LATENCY_TAG + _DOUBLE.pack(latency_ms) if latency_ms else b""  # proto3 leaves 0.0 out
        return delimited(0x0A, request_id.encode()) + outputs + self._model_field + latency


def _output_head(name: str, array: np.ndarray) -> bytes:
    """Everything of PredictResponse.outputs before an output's data: the field's tag and length, then the
    Tensor's name, shape (packed), dtype, and its data's tag and length (fixed by shape and dtype)."""
    fields = delimited(0x0A, name.encode()) if name else b""
    if array.ndim:
        fields += delimited(0x12, b"".join(varint(int(d)) for d in array.shape))
    fields += delimited(0x1A, dtype_name(array.dtype).encode())
    if array.nbytes:  # proto3 leaves empty bytes out
        fields += b"\x22" + varint(array.nbytes)
    return b"\x12" + varint(len(fields) + array.nbytes) + fields
