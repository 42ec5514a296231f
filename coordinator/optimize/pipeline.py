"""Run a recipe on an upload: build every variant, measure each on its `.tflite`, check the Edge TPU fit.

Bad input (data, model, recipe) raises an `OptimizeInputError` before anything is built. After that, a
technique that fails or does not apply gets a row with `error` or `skipped` and the run goes on.
"""
from __future__ import annotations

import importlib
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from coordinator.optimize.artifacts import ArtifactStore, CachedBuild, cache_key
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.data import check_against_model, load_dataset, representative_rows
from coordinator.optimize.errors import ModelError, TechniqueSkipped
from coordinator.optimize.measure import measure_tflite
from coordinator.optimize.models import file_sha256, load_model
from coordinator.optimize.recipes import TABULAR_ONLY, TECHNIQUES, Step, load_recipe
from coordinator.optimize.results import EdgeTpuFit, PipelineResult, VariantResult

Progress = Callable[[dict[str, Any]], None]


def _builder(step: Step) -> Callable[..., Any]:
    module, _, function = TECHNIQUES[step.technique].builder.partition(":")
    return getattr(importlib.import_module(module), function)


def _versions() -> dict[str, str]:
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot

    return {"tensorflow": tf.__version__, "tfmot": tfmot.__version__}


def run_pipeline(
    model_path: Path,
    data_path: Path,
    *,
    workdir: Path,
    recipe: str | Path = "default",
    task: str | None = None,
    spec_path: Path | None = None,
    size_limit_bytes: int | None = None,
    progress: Progress | None = None,
) -> PipelineResult:
    """Build and measure every variant of `recipe` ("default", "full" or a recipe file) for one upload.

    `workdir` holds the artifacts (`artifacts/<sha256>.tflite`) and the build cache; reuse it across runs
    of the same model to skip finished conversions. `task` overrides inference ("classification" or
    "regression"); `spec_path` is the tuning search space; `progress` receives the worker's events.
    Raises DataError, ModelError or RecipeError (all OptimizeInputError) for bad input.
    """
    started = time.monotonic()
    emit = progress or (lambda event: None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    # Cheap checks first: a bad recipe or data file is rejected before TensorFlow loads the model.
    emit({"event": "progress", "step": "load data", "done": 0, "total": 0})
    data = load_dataset(Path(data_path))
    recipe_name, steps = load_recipe(recipe, tabular=data.is_tabular)
    if spec_path is not None and any(s.technique == "tuning" for s in steps):
        from coordinator.optimize.tuning import load_spec

        load_spec(Path(spec_path))
    emit({"event": "progress", "step": "load model", "done": 0, "total": len(steps)})
    model = load_model(Path(model_path), workdir=workdir, size_limit_bytes=size_limit_bytes)
    info = check_against_model(data, model.input_shape, model.n_outputs, task)

    store = ArtifactStore(workdir)
    ctx = BuildContext(
        model=model, data=data, info=info, representative=representative_rows(data), workdir=workdir,
        store=store, spec_path=Path(spec_path) if spec_path else None,
    )
    result = PipelineResult(
        model_sha256=model.sha256, data_sha256=data.sha256, source_format=model.source_format,
        model_flavor=model.flavor, task=info.task, metric_name=info.metric_name, recipe=recipe_name,
        baseline_id="fp32", input_shape=list(model.input_shape), n_outputs=info.n_outputs,
    )
    if not data.has_train:
        result.notes.append("no training data: int8 calibrates on x_val and techniques that train are skipped")
    if model.flavor == "tflite":
        steps = [s for s in steps if s.technique != "fp32"]
        result.baseline_id = "uploaded"
        row = _measure(ctx, "uploaded", "as_is", {}, Built(model.tflite_bytes), store)
        ctx.baseline = model.tflite_bytes
        result.variants.append(row)
        emit({"event": "variant", **row.to_dict()})
    spec_sha = file_sha256(ctx.spec_path) if ctx.spec_path and ctx.spec_path.is_file() else None
    versions = _versions()
    total = len(steps)
    for done, step in enumerate(steps):
        emit({"event": "progress", "step": step.id, "technique": step.technique, "done": done, "total": total})
        params = step.params.model_dump()
        try:
            builds, reused = _build(ctx, step, store, cache_key(
                model=model.sha256, data=data.sha256, task=info.task, technique=step.technique, params=params,
                spec=spec_sha if step.technique == "tuning" else None, versions=versions,
            ))
        except TechniqueSkipped as exc:
            rows = [VariantResult(id=step.id, technique=step.technique, params=params, metric_name=info.metric_name, skipped=str(exc))]
        except ModelError:
            if step.technique == "fp32":  # the upload itself cannot become a device model
                raise
            rows = [_error_row(step, params, info.metric_name)]
        except Exception:
            if step.technique == "fp32":
                raise ModelError(f"the model cannot be converted to TFLite: {traceback.format_exc(limit=1).strip().splitlines()[-1]}")
            rows = [_error_row(step, params, info.metric_name)]
        else:
            rows = []
            for b in builds:
                variant_id = f"{step.id}_{b.suffix}" if b.suffix else step.id
                rows.append(_measure(ctx, variant_id, step.technique, {**params, **b.params}, b, store))
                if reused:
                    result.reused.append(variant_id)
            if step.technique == "fp32" and builds:
                ctx.baseline = builds[0].tflite
        for row in rows:
            result.variants.append(row)
            emit({"event": "variant", **row.to_dict()})
    if model.flavor != "tflite" and ctx.baseline is None:
        raise ModelError("the fp32 conversion produced no artifact")
    result.elapsed_s = time.monotonic() - started
    emit({"event": "progress", "step": "done", "done": total, "total": total})
    return result


def _error_row(step: Step, params: dict[str, Any], metric_name: str) -> VariantResult:
    exc_text = traceback.format_exc(limit=0).strip().splitlines()
    message = exc_text[-1] if exc_text else "unknown error"
    return VariantResult(id=step.id, technique=step.technique, params=params, metric_name=metric_name, error=message[:1000])


def _build(ctx: BuildContext, step: Step, store: ArtifactStore, key: str) -> tuple[list[Built], bool]:
    """(builds, whether they came from the cache)."""
    if step.technique in TABULAR_ONLY and not ctx.data.is_tabular:
        raise TechniqueSkipped(f"{step.technique} applies to 1-D feature-vector inputs; this input has shape {ctx.data.x_val.shape[1:]}")
    cached = store.lookup(key)
    if cached is not None:
        return [Built(store.read(c.sha256), c.figures, c.input_features, c.params, c.suffix) for c in cached], True
    out = _builder(step)(ctx, step.params)
    builds = out if isinstance(out, list) else [out]
    remembered = []
    for b in builds:
        sha, _ = store.put(b.tflite)
        remembered.append(CachedBuild(sha, b.figures, b.input_features, b.params, b.suffix))
    store.remember(key, remembered)
    return builds, False


def _measure(ctx: BuildContext, variant_id: str, technique: str, params: dict[str, Any], built: Built, store: ArtifactStore) -> VariantResult:
    from coordinator.optimize import edgetpu

    sha, path = store.put(built.tflite)
    row = VariantResult(id=variant_id, technique=technique, params=params, sha256=sha, path=str(path),
                        metric_name=ctx.info.metric_name, input_features=built.input_features)
    try:
        m = measure_tflite(built.tflite, x_val=ctx.data.x_val, y_val=ctx.data.y_val, task=ctx.info.task,
                           input_features=built.input_features)
    except Exception as exc:  # an artifact the interpreter rejects is that variant's failure
        row.error = f"measurement failed: {type(exc).__name__}: {exc}"[:1000]
        return row
    row.size_bytes, row.gzip_bytes, row.metric = m.size_bytes, m.gzip_bytes, m.metric
    row.latency_p50_ms, row.latency_p95_ms, row.peak_memory_bytes = m.latency_p50_ms, m.latency_p95_ms, m.peak_memory_bytes
    row.ops, row.input_dtype, row.output_dtype = m.ops, m.input_dtype, m.output_dtype
    row.input_quant, row.output_quant = m.input_quant, m.output_quant
    row.input_shape, row.output_shape = m.input_shape, m.output_shape
    row.figures = {"macs": float(m.macs), "sparsity": m.weight_sparsity, **built.figures}
    if built.input_features is not None:
        row.figures.setdefault("n_features", float(len(built.input_features)))
    try:
        row.edgetpu = edgetpu.check(built.tflite, store)
    except Exception as exc:
        row.edgetpu = EdgeTpuFit("incompatible", f"analysis failed: {type(exc).__name__}: {exc}")
    return row
