"""`edgefleet.v1.Inference` for local apps: Predict, ListModels, DescribeModel, Feedback, Health.

Status codes an app can act on:
    INVALID_ARGUMENT     a tensor does not fit the model (names the tensor, what was expected, what came),
                         or a Feedback for a batched request
    NOT_FOUND            `model` names a model this agent does not serve; Feedback for an unknown request id
    ALREADY_EXISTS       a second Feedback for the same request
    FAILED_PRECONDITION  no model is active yet
    RESOURCE_EXHAUSTED   the waiting line for the model is full (retry later), or the request is larger
                         than the server's message limit (gRPC's own check)
    INTERNAL             the runtime failed on a valid request

Telemetry: every Predict that reaches a model is a request; one that fails there (bad input or a runtime
failure) is also an error. Latency is the model call as the agent sees it (waiting for the interpreter,
(de)quantization, invoke), not the gRPC transport. The observer sees the inputs only to count drift bins.

Feedback.matched: for a classifier, whether the remembered top-1 class equals the label; for a
regression model, true once the target is recorded (its error goes into the online MAE).

Two transports call the same logic: the gRPC methods (Predict, ...) and the framed unix socket of
agent.serve.fast call `predict`, `feedback`, `health`, `describe` and `list_models`, which raise
ApiError (a status code and the message) where gRPC aborts. Both therefore share the waiting line,
the recent predictions for Feedback, the observer (telemetry) and the failure count behind Health.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import grpc
import numpy as np

from agent.client import delimited
from agent.runtime.errors import InvalidInput
from agent.serve import wire
from agent.serve.admission import Admission
from agent.serve.host import ModelHost, ServedModel
from agent.serve.prepared import Plan
from agent.serve.recent import Prediction, RecentPredictions, UnknownRequest
from agent.telemetry.accuracy import OutputSummary, summarize
from edgefleet.v1 import device_pb2, inference_pb2, inference_pb2_grpc

if TYPE_CHECKING:
    from agent.serve.regions import Regions

log = logging.getLogger(__name__)

SERVING, NO_MODEL, DEGRADED = "serving", "no_model", "degraded"
# Consecutive runtime failures after which Health says degraded (one bad request is not a sick model).
DEGRADED_AFTER_FAILURES = 3


class InferenceObserver(Protocol):
    """Receives what telemetry aggregates (agent.telemetry.TelemetryCollector implements it)."""

    def on_predict(self, served: ServedModel, latency_ms: float, inputs: Mapping[str, np.ndarray], summary: OutputSummary) -> None: ...

    def on_error(self, served: ServedModel, kind: str) -> None: ...

    def on_feedback(self, prediction: Prediction, label: int, target: float) -> None: ...


class NullObserver:
    def on_predict(self, served: ServedModel, latency_ms: float, inputs: Mapping[str, np.ndarray], summary: OutputSummary) -> None:
        pass

    def on_error(self, served: ServedModel, kind: str) -> None:
        pass

    def on_feedback(self, prediction: Prediction, label: int, target: float) -> None:
        pass


class ApiError(Exception):
    """A request the API refuses: the status code an app gets and the message naming what was wrong."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(
        self,
        host: ModelHost,
        *,
        observer: InferenceObserver | None = None,
        admission: Admission | None = None,
        recent: RecentPredictions | None = None,
        installed: Callable[[], Sequence[device_pb2.ActiveModel]] | None = None,
        degraded: Callable[[], str] | None = None,
    ) -> None:
        """`installed()`: the models kept on the device (A/B slots) for ListModels; default: the active one.
        `degraded()`: a reason the daemon wants Health to report (e.g. a rollback in progress), or ""."""
        self.host = host
        self.observer: InferenceObserver = observer if observer is not None else NullObserver()
        self.admission = admission if admission is not None else Admission(max_waiting=8)
        self.recent = recent if recent is not None else RecentPredictions()
        self._installed = installed
        self._degraded = degraded
        self._failures_in_a_row = 0

    # -- Predict ------------------------------------------------------------------------------

    def Predict(self, request: inference_pb2.PredictRequest, context: grpc.ServicerContext) -> inference_pb2.PredictResponse:
        try:
            return self.predict(request)
        except ApiError as exc:
            context.abort(exc.code, exc.message)

    def predict(self, request: inference_pb2.PredictRequest, regions: Regions | None = None) -> inference_pb2.PredictResponse:
        """Run the request on the model (or the one it names); raises ApiError. `regions`: the fast-socket
        connection's shared-memory regions, which tensors (and outputs_to) may name; gRPC has none."""
        if not self.admission.try_enter():
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"the model is busy: {self.admission.max_waiting} requests are already waiting for it; retry later")
        try:
            with self.host.lease() as served:
                served = self._resolve(served, request.model)
                return self._predict(served, request, regions)
        finally:
            self.admission.leave()

    def _predict(self, served: ServedModel, request: inference_pb2.PredictRequest,
                 regions: Regions | None) -> inference_pb2.PredictResponse:
        try:
            inputs = wire.decode_inputs(request.inputs, served.input_names, regions)
            started = time.perf_counter()
            outputs = served.model.predict(inputs)
            latency_ms = (time.perf_counter() - started) * 1e3
            tensors = wire.encode_outputs(outputs, regions, request.outputs_to if request.HasField("outputs_to") else None)
        except Exception as exc:  # noqa: BLE001 - _refusal tells a bad request from the runtime's failure
            raise self._refusal(served, exc) from None
        request_id = self._record(served, outputs, latency_ms, inputs)
        return inference_pb2.PredictResponse(request_id=request_id, outputs=tensors, model=served.active,
                                             latency_ms=latency_ms)

    # -- a repeated Predict (agent.serve.prepared) --------------------------------------------

    def prepare(self, request: inference_pb2.PredictRequest, regions: Regions, body: bytes) -> Plan | None:
        """A plan for running `request` (whose bytes are `body`) again, or None when it cannot have one:
        a tensor carries its bytes, the model cannot be prepared for, or the request is bad (the
        general path then answers it, with its error)."""
        with self.host.lease() as served:
            if served is None or (request.model and not served.matches(request.model)):
                return None
            if not request.inputs or any(not t.HasField("shared") for t in request.inputs):
                return None
            model = served.model
            if not (callable(getattr(model, "prepare", None)) and callable(getattr(model, "run", None))):
                return None  # a Predictor without them (a fake in tests)
            outputs_to = request.outputs_to if request.HasField("outputs_to") else None
            try:
                inputs = wire.decode_inputs(request.inputs, served.input_names, regions)
                prepared = model.prepare(inputs)
                if outputs_to is not None:
                    regions.write(outputs_to, "outputs_to")  # writable and in bounds, or no plan
            except InvalidInput:
                return None
            bindings = {b.index: b for b in model.input_bindings}
            return Plan(body, served, inputs, prepared, bindings, outputs_to)

    def predict_prepared(self, plan: Plan, regions: Regions) -> bytes | None:
        """Run the plan's request again: the PredictResponse's bytes; None when its model is no longer the
        active one (the caller then takes the general path). Raises ApiError as `predict` does."""
        if not self.admission.try_enter():
            raise ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                           f"the model is busy: {self.admission.max_waiting} requests are already waiting for it; retry later")
        try:
            with self.host.lease() as served:
                if served is not plan.served:
                    return None
                try:
                    arrays = plan.arrays()
                    started = time.perf_counter()
                    outputs = served.model.run(arrays)
                    latency_ms = (time.perf_counter() - started) * 1e3
                    if plan.outputs_to is None:
                        encoded = plan.outputs_field(outputs)
                    else:
                        encoded = b"".join(delimited(0x12, t.SerializeToString())  # PredictResponse.outputs
                                           for t in wire.encode_outputs(outputs, regions, plan.outputs_to))
                except Exception as exc:  # noqa: BLE001
                    raise self._refusal(served, exc) from None
                request_id = self._record(served, outputs, latency_ms, plan.inputs)
                return plan.response(request_id, latency_ms, encoded)
        finally:
            self.admission.leave()

    # -- what every Predict does after the model call -----------------------------------------

    def _refusal(self, served: ServedModel, exc: Exception) -> ApiError:
        """The ApiError for a Predict that failed at the model: a bad request, or the runtime's failure."""
        if isinstance(exc, InvalidInput):
            self._observe(self.observer.on_error, served, "invalid_input")
            return ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self._failures_in_a_row += 1
        self._observe(self.observer.on_error, served, "internal")
        log.warning("inference failed on %s: %s", served.key, exc)
        return ApiError(grpc.StatusCode.INTERNAL, f"inference failed on {served.key}: {' '.join(str(exc).split())}")

    def _record(self, served: ServedModel, outputs: Mapping[str, np.ndarray], latency_ms: float,
                inputs: Mapping[str, np.ndarray]) -> str:
        """Telemetry and the memory for Feedback of an answered request; returns its request id."""
        self._failures_in_a_row = 0
        first = next(iter(outputs.values())) if outputs else np.zeros((1, 0), np.float32)
        try:
            summary = summarize(first, served.task)
        except (TypeError, ValueError):  # an output that is not numbers (strings): nothing to score
            summary = OutputSummary(rows=0)
        request_id = os.urandom(16).hex()  # as random as uuid4, a third of the cost
        self.recent.add(request_id, _prediction(served, summary))
        self._observe(self.observer.on_predict, served, latency_ms, inputs, summary)
        return request_id

    @staticmethod
    def _observe(method: Callable[..., None], *args: Any) -> None:
        """Telemetry must never fail a request that the model answered."""
        try:
            method(*args)
        except Exception:  # noqa: BLE001
            log.exception("telemetry observer failed")

    def _resolve(self, served: ServedModel | None, name: str) -> ServedModel:
        if served is None:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           "no model is active on this device yet (none installed, or the last one failed to load)")
        if name and not served.matches(name):
            raise ApiError(grpc.StatusCode.NOT_FOUND,
                           f"model {name!r} is not served here; the active model is {served.active.model!r} "
                           f"version {served.active.version!r} (send an empty model name for the active one)")
        return served

    # -- description --------------------------------------------------------------------------

    def ListModels(self, request: inference_pb2.ListLocalModelsRequest, context: grpc.ServicerContext) -> inference_pb2.ListLocalModelsResponse:
        return self.list_models(request)

    def list_models(self, request: inference_pb2.ListLocalModelsRequest) -> inference_pb2.ListLocalModelsResponse:
        served = self.host.current
        models = list(self._installed()) if self._installed is not None else ([served.active] if served else [])
        return inference_pb2.ListLocalModelsResponse(models=models, active_variant_id=served.active.variant_id if served else "")

    def DescribeModel(self, request: inference_pb2.DescribeModelRequest, context: grpc.ServicerContext) -> inference_pb2.DescribeModelResponse:
        try:
            return self.describe(request)
        except ApiError as exc:
            context.abort(exc.code, exc.message)

    def describe(self, request: inference_pb2.DescribeModelRequest) -> inference_pb2.DescribeModelResponse:
        served = self._resolve(self.host.current, request.model)
        backend: Any = served.model.backend
        runtime = getattr(backend, "runtime", None)
        return inference_pb2.DescribeModelResponse(
            model=served.active,
            inputs=list(served.model.inputs),
            outputs=list(served.model.outputs),
            runtime=f"{runtime.name} {runtime.version}" if runtime is not None else "",
            delegate=served.delegate,
            delegate_reason=getattr(backend, "reason", ""),
        )

    # -- ground truth -------------------------------------------------------------------------

    def Feedback(self, request: inference_pb2.FeedbackRequest, context: grpc.ServicerContext) -> inference_pb2.FeedbackResponse:
        try:
            return self.feedback(request)
        except ApiError as exc:
            context.abort(exc.code, exc.message)

    def feedback(self, request: inference_pb2.FeedbackRequest) -> inference_pb2.FeedbackResponse:
        if not request.request_id:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "request_id is empty: pass the request_id a Predict response returned")
        found = self.recent.get(request.request_id)
        if found is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND,
                           f"unknown request id {request.request_id!r}: not among the last {self.recent.size} predictions "
                           "(feedback must name a recent Predict response's request_id)")
        if found.rows != 1:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"request {request.request_id!r} predicted a batch of {found.rows} rows; feedback takes one label, "
                           "so send rows one per Predict to have them scored")
        try:
            prediction = self.recent.claim(request.request_id)
        except UnknownRequest:  # pushed out between get and claim by a burst of predictions
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"unknown request id {request.request_id!r}: it just expired") from None
        if prediction is None:
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"feedback for request {request.request_id!r} was already given")
        self._observe(self.observer.on_feedback, prediction, request.label, request.target)
        matched = prediction.top1 == request.label if prediction.task == "classification" else True
        return inference_pb2.FeedbackResponse(matched=bool(matched))

    # -- health -------------------------------------------------------------------------------

    def Health(self, request: inference_pb2.HealthRequest, context: grpc.ServicerContext) -> inference_pb2.HealthResponse:
        return self.health(request)

    def health(self, request: inference_pb2.HealthRequest | None = None) -> inference_pb2.HealthResponse:
        served = self.host.current
        if served is None:
            return inference_pb2.HealthResponse(status=NO_MODEL, detail="no model is active on this device yet")
        reasons = [r for r in (self._degraded() if self._degraded else "", served.degraded_reason) if r]
        if self._failures_in_a_row >= DEGRADED_AFTER_FAILURES:
            reasons.append(f"the last {self._failures_in_a_row} predictions failed in the runtime")
        describe = getattr(served.model.backend, "describe", None)
        where = describe() if callable(describe) else served.delegate
        if reasons:
            return inference_pb2.HealthResponse(status=DEGRADED, detail=f"{served.key}: " + "; ".join(reasons))
        return inference_pb2.HealthResponse(status=SERVING, detail=f"{served.key} on {where}")


def _prediction(served: ServedModel, summary: OutputSummary) -> Prediction:
    if summary.top1:
        return Prediction(served.key, served.task, summary.rows, summary.top1[0],
                          summary.confidence[0] if summary.confidence else None, None)
    return Prediction(served.key, served.task, summary.rows, None, None, summary.values[0] if summary.values else None)
