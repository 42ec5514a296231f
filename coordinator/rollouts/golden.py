"""The golden set a manifest ships: a few hundred validation samples of the data uploaded with the model.

The agent scores the staged model on it before activation (agent/install/acceptance.py reads an .npz
with `x` and `y`). Samples are taken evenly spaced over the validation arrays (sorted data would
otherwise give a set of one class), features an RFE variant dropped are dropped here too, and the
.npz is written byte-for-byte reproducibly (fixed zip timestamps), so the same data always gives the
same artifact: two rollouts of one version share it, and it is stored once.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from coordinator.models.artifacts import ArtifactError, ArtifactStore
from edgefleet.v1 import manifest_pb2

# (x, y) pairs tried in order: the upload format names x_val/y_val; test arrays and then training
# arrays stand in when a push came without validation data.
_PAIRS = (("x_val", "y_val"), ("x_test", "y_test"), ("x_train", "y_train"))


class GoldenSetUnavailable(ValueError):
    """No golden set can be made from the version's data; the message says why."""


@dataclass(frozen=True)
class GoldenSet:
    sha256: str
    size_bytes: int
    count: int

    def to_proto(self) -> manifest_pb2.GoldenSet:
        return manifest_pb2.GoldenSet(sha256=self.sha256, size_bytes=self.size_bytes, count=self.count)

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "size_bytes": self.size_bytes, "count": self.count}

    @classmethod
    def from_json(cls, data: dict) -> GoldenSet:
        return cls(data["sha256"], int(data["size_bytes"]), int(data["count"]))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An .npz (uncompressed, as np.savez writes) with fixed timestamps: same arrays, same bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            z.writestr(info, member.getvalue())
    return buf.getvalue()


def golden_arrays(data: Mapping[str, np.ndarray], samples: int, input_features: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """{x, y}: `samples` evenly spaced rows of the first (x, y) pair the data has."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    for xk, yk in _PAIRS:
        if xk in data and yk in data:
            x, y = np.asarray(data[xk]), np.asarray(data[yk])
            break
    else:
        raise GoldenSetUnavailable(f"the data has no validation arrays (looked for {', '.join(x + '/' + y for x, y in _PAIRS)}; has {', '.join(sorted(data)) or 'nothing'})")
    if len(x) != len(y) or len(x) == 0:
        raise GoldenSetUnavailable(f"{xk} has {len(x)} rows and {yk} {len(y)}: cannot make a golden set")
    n = min(samples, len(x))
    rows = np.unique(np.linspace(0, len(x) - 1, n).round().astype(np.int64))
    x, y = x[rows], y[rows]
    if input_features:
        if x.ndim != 2:
            raise GoldenSetUnavailable(f"the variant keeps input features {list(input_features)[:8]}... but {xk} is not a 2-D feature table (shape {x.shape})")
        x = x[:, list(input_features)]
    if x.dtype == np.float64:
        x = x.astype(np.float32)  # models take float32: half the bytes on the wire
    return {"x": x, "y": y}


def make_golden_set(artifacts: ArtifactStore, data_sha256: str, samples: int, input_features: Sequence[int] | None = None) -> GoldenSet:
    """Build (or find: the bytes are reproducible) the golden set of one data upload and store it as an artifact."""
    try:
        path = artifacts.existing_path(data_sha256)
    except ArtifactError as exc:
        raise GoldenSetUnavailable(f"the version's data is not in the artifact store: {exc}") from None
    try:
        # NpzFile reads an array only when it is asked for: the training arrays (maybe GBs) stay on disk.
        with np.load(path, allow_pickle=False) as npz:
            arrays = golden_arrays(npz, samples, input_features)
    except GoldenSetUnavailable:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise GoldenSetUnavailable(f"the version's data {data_sha256[:12]} is not a readable .npz: {exc}") from None
    blob = npz_bytes(arrays)
    sha = artifacts.put_bytes(blob)
    return GoldenSet(sha, len(blob), int(len(arrays["y"])))
