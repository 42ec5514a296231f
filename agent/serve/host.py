"""The model the agent serves now, and the atomic swap to another one.

`ModelHost` holds one `ServedModel` (a loaded model with the manifest it was installed from). Requests
take a *lease* on the current model for the length of one call; `activate` replaces the model in one
step, so a request sees either the old model or the new one, never a mix. The replaced model is closed
when its last lease ends (its interpreter's memory goes then, not while a request still runs on it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Protocol, Sequence

import numpy as np

from edgefleet.v1 import device_pb2, manifest_pb2

log = logging.getLogger(__name__)


class Predictor(Protocol):
    """What the server needs of a model: agent.runtime.LoadedModel, or a fake in tests."""

    backend: Any  # agent.runtime.Backend: key, reason, runtime.name, runtime.version, describe()

    @property
    def inputs(self) -> Sequence[manifest_pb2.TensorSpec]: ...

    @property
    def outputs(self) -> Sequence[manifest_pb2.TensorSpec]: ...

    def predict(self, inputs: Mapping[str, Any]) -> dict[str, np.ndarray]: ...

    def evaluate(self, x: Any, y: np.ndarray, task: str) -> float: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ModelKey:
    """One model version as telemetry reports it."""

    model: str
    version: str
    variant_id: str

    @classmethod
    def of(cls, active: device_pb2.ActiveModel) -> ModelKey:
        return cls(active.model, active.version, active.variant_id)

    def __str__(self) -> str:
        return f"{self.model}:{self.version}" + (f" ({self.variant_id})" if self.variant_id else "")


def active_from_manifest(manifest: manifest_pb2.ModelManifest) -> device_pb2.ActiveModel:
    return device_pb2.ActiveModel(model=manifest.model, version=manifest.version, variant_id=manifest.variant_id,
                                  sha256=manifest.sha256, sequence=manifest.sequence)


def infer_task(outputs: Sequence[manifest_pb2.TensorSpec]) -> str:
    """A model without a manifest: more than one unit in its first output reads as a classifier."""
    if outputs and outputs[0].shape and outputs[0].shape[-1] > 1:
        return "classification"
    return "regression"


@dataclass(eq=False)
class ServedModel:
    model: Predictor
    active: device_pb2.ActiveModel
    manifest: manifest_pb2.ModelManifest | None
    task: str
    key: ModelKey
    input_names: tuple[str, ...]
    activated_at: float  # seconds since the epoch
    # Lease bookkeeping, guarded by the host's lock.
    _leases: int = field(default=0, repr=False)
    _retired: bool = field(default=False, repr=False)

    def matches(self, name: str) -> bool:
        """Does a request's `model` field name this model? Empty, the model name, model:version or the variant id."""
        a = self.active
        return name in ("", a.model, f"{a.model}:{a.version}") or (bool(a.variant_id) and name == a.variant_id)

    @property
    def delegate(self) -> str:
        key = getattr(self.model.backend, "key", "cpu")
        return "xnnpack" if key == "cpu" else key

    @property
    def degraded_reason(self) -> str:
        """Non-empty when the model was built for a delegate this device could not load."""
        wanted = self.manifest.requires_delegate if self.manifest is not None else ""
        if wanted and getattr(self.model.backend, "key", "cpu") != wanted:
            return f"the model is compiled for {wanted} but runs on {self.delegate}: {getattr(self.model.backend, 'reason', '')}"
        return ""


Listener = Callable[[ServedModel | None], None]


class ModelHost:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._current: ServedModel | None = None
        self._listeners: list[Listener] = []
        self._load_errors: dict[ModelKey, str] = {}

    @property
    def current(self) -> ServedModel | None:
        return self._current

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(served)` after every activation (None after clear()); it must not block long."""
        self._listeners.append(listener)

    # -- swapping -----------------------------------------------------------------------------

    def activate(
        self,
        model: Predictor,
        *,
        manifest: manifest_pb2.ModelManifest | None = None,
        active: device_pb2.ActiveModel | None = None,
    ) -> ServedModel:
        """Serve `model` from now on; the previous one is closed once no request uses it."""
        if active is None:
            active = active_from_manifest(manifest) if manifest is not None else device_pb2.ActiveModel(
                model=Path(str(getattr(model, "path", "model"))).stem)
        task = (manifest.task if manifest is not None else "") or infer_task(list(model.outputs))
        served = ServedModel(model=model, active=active, manifest=manifest, task=task, key=ModelKey.of(active),
                             input_names=tuple(spec.name for spec in model.inputs), activated_at=self._clock())
        self._swap(served)
        return served

    def load(
        self,
        path: Path | str,
        manifest: manifest_pb2.ModelManifest | None = None,
        *,
        active: device_pb2.ActiveModel | None = None,
        accelerators: Collection[str] = (),
        preferred: str | None = None,
        num_threads: int | None = None,
    ) -> ServedModel:
        """Load a .tflite with the backend this device offers and activate it.

        Raises agent.runtime.ModelLoadError (the current model keeps serving) when the runtime refuses it.
        """
        from agent.runtime import LoadedModel, select_backend  # the runtime import costs; only when a model comes

        named = active if active is not None else (active_from_manifest(manifest) if manifest is not None else None)
        key = ModelKey.of(named) if named is not None else None
        try:
            backend = select_backend(accelerators, preferred, manifest.requires_delegate if manifest is not None else None,
                                     num_threads=num_threads)
            loaded = LoadedModel.load(path, backend)
        except Exception as exc:
            if key is not None:
                self._load_errors[key] = " ".join(str(exc).split()) or type(exc).__name__
            raise
        if key is not None:
            self._load_errors.pop(key, None)
        return self.activate(loaded, manifest=manifest, active=active)

    def load_error(self, key: ModelKey) -> str | None:
        """Why the last load() of this model version failed, None when it did not (trial: load_failed)."""
        return self._load_errors.get(key)

    def clear(self) -> None:
        """Serve nothing (Predict answers FAILED_PRECONDITION)."""
        self._swap(None)

    def _swap(self, served: ServedModel | None) -> None:
        with self._lock:
            previous, self._current = self._current, served
            close_now = previous is not None and previous._leases == 0
            if previous is not None:
                previous._retired = True
        if close_now:
            _close(previous)
        for listener in list(self._listeners):
            try:
                listener(served)
            except Exception:  # noqa: BLE001 - a listener must not undo an activation
                log.exception("model activation listener failed")

    # -- requests -----------------------------------------------------------------------------

    def lease(self) -> _Lease:
        """The current model (or None), kept open until the `with` block ends."""
        return _Lease(self)

    def close(self) -> None:
        self.clear()


class _Lease:
    """ModelHost.lease(): a plain context manager (a generator-based one costs a few µs per request)."""

    __slots__ = ("_host", "_served")

    def __init__(self, host: ModelHost) -> None:
        self._host = host
        self._served: ServedModel | None = None

    def __enter__(self) -> ServedModel | None:
        host = self._host
        with host._lock:
            served = self._served = host._current
            if served is not None:
                served._leases += 1
        return served

    def __exit__(self, *exc: object) -> None:
        served = self._served
        if served is None:
            return
        with self._host._lock:
            served._leases -= 1
            close_now = served._retired and served._leases == 0
        if close_now:
            _close(served)


def _close(served: ServedModel | None) -> None:
    if served is None:
        return
    try:
        served.model.close()
    except Exception:  # noqa: BLE001 - closing a replaced model must not fail the swap
        log.exception("closing model %s failed", served.key)
