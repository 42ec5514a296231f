"""Hyperparameter tuning: an Optuna multi-objective search (metric vs latency vs size) under constraints.

The user describes a model family in a small spec file (TOML or YAML); without one, a default spec for the
input kind is used (an MLP for feature vectors, a small CNN for images):

    family = "mlp"                 # mlp | cnn | auto
    widths = [16, 32, 64, 128]     # choices for each hidden layer's units (mlp) or filters (cnn)
    depth = [1, 3]                 # number of hidden layers / conv blocks, inclusive range
    dropout = [0.0, 0.3]
    l1 = [0.0, 0.0]                # L1 penalty range (0 to disable; log-uniform when both ends > 0)
    l2 = [1e-6, 1e-3]              # L2 penalty range
    learning_rate = [1e-4, 1e-2]   # log-uniform
    epochs = 10
    quantize = "int8"
    keep = 3                       # how many Pareto-optimal models become variants
    [budget]
    trials = 20
    seconds = 300
    [constraints]                  # a trial that misses one is infeasible
    min_metric = 0.9               # accuracy floor (classification) ...
    max_metric = 5.0               # ... or MAE ceiling (regression)
    max_latency_ms = 0.5
    max_size_bytes = 100000

Each trial trains on 80 % of x_train, is converted, and is scored on the other 20 % with the LiteRT
interpreter (metric, p50 latency of 50 invokes, bytes). The validation split is kept out of the search,
so the pipeline's measurement of the kept models on it is not biased by the selection.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
import tf_keras
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from coordinator.optimize import finetune
from coordinator.optimize.build import BuildContext, Built
from coordinator.optimize.conversion import convert
from coordinator.optimize.errors import RecipeError, TechniqueSkipped
from coordinator.optimize.measure import latency_ms, predict, score
from coordinator.optimize.recipes import TuningParams

L = tf_keras.layers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _ordered(pair: tuple[float, float]) -> tuple[float, float]:
    if pair[0] > pair[1]:
        raise ValueError(f"range {list(pair)} is reversed")
    return pair


class Budget(_Strict):
    trials: int = Field(12, ge=1)
    seconds: float = Field(300, gt=0)


class Constraints(_Strict):
    min_metric: float | None = None
    max_metric: float | None = None
    max_latency_ms: float | None = Field(None, gt=0)
    max_size_bytes: int | None = Field(None, gt=0)


class TuningSpec(_Strict):
    family: Literal["mlp", "cnn", "auto"] = "auto"
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64, 128], min_length=1)
    depth: tuple[int, int] = (1, 3)
    dropout: tuple[float, float] = (0.0, 0.3)
    l1: tuple[float, float] = (0.0, 0.0)
    l2: tuple[float, float] = (1e-6, 1e-3)
    learning_rate: tuple[float, float] = (1e-4, 1e-2)
    epochs: int = Field(10, ge=1)
    quantize: Literal["int8", "fp32", "float16", "dynamic"] = "int8"
    keep: int = Field(3, ge=1)
    budget: Budget = Field(default_factory=Budget)
    constraints: Constraints = Field(default_factory=Constraints)

    @model_validator(mode="after")
    def _ranges(self) -> TuningSpec:
        for name in ("depth", "dropout", "l1", "l2", "learning_rate"):
            _ordered(getattr(self, name))
        if self.depth[0] < 1 or any(w < 1 for w in self.widths):
            raise ValueError("depth and widths must be at least 1")
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ValueError("dropout must be within [0, 1)")
        if self.learning_rate[0] <= 0:
            raise ValueError("learning_rate must be above 0")
        return self


def load_spec(path: Path | None) -> TuningSpec:
    if path is None:
        return TuningSpec()
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"tuning spec {path} does not exist")
    try:
        text = path.read_text()
        doc = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"tuning spec {path.name} does not parse: {exc}") from exc
    try:
        return TuningSpec(**(doc or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise RecipeError(f"tuning spec {path.name}: {problems}") from exc
    except TypeError as exc:
        raise RecipeError(f"tuning spec {path.name}: expected a table of settings") from exc


def _suggest_range(trial: optuna.Trial, name: str, low: float, high: float, log_ok: bool = True) -> float:
    if low == high:
        return low
    if log_ok and low > 0:
        return trial.suggest_float(name, low, high, log=True)
    return trial.suggest_float(name, low, high)


def make_model(spec: TuningSpec, hp: dict[str, Any], input_shape: tuple[int, ...], n_outputs: int, task: str) -> Any:
    family = spec.family
    if family == "auto":
        family = "cnn" if len(input_shape) == 3 else "mlp"
    reg = tf_keras.regularizers.L1L2(l1=hp["l1"], l2=hp["l2"])
    layers: list[Any] = [tf_keras.Input(shape=input_shape)]
    if family == "cnn":
        if len(input_shape) != 3:
            raise TechniqueSkipped(f"tuning: family 'cnn' needs (height, width, channels) inputs, not {input_shape}")
        size = min(input_shape[:2])
        for i in range(hp["depth"]):
            layers.append(L.Conv2D(hp[f"width_{i}"], 3, padding="same", activation="relu", kernel_regularizer=reg))
            if size >= 4:
                layers.append(L.MaxPooling2D(2))
                size //= 2
        layers.append(L.Flatten())
    else:
        if len(input_shape) != 1:
            layers.append(L.Flatten())
        for i in range(hp["depth"]):
            layers.append(L.Dense(hp[f"width_{i}"], activation="relu", kernel_regularizer=reg))
            if hp["dropout"] > 0:
                layers.append(L.Dropout(hp["dropout"]))
    if family == "cnn" and hp["dropout"] > 0:
        layers.append(L.Dropout(hp["dropout"]))
    activation = None if task == "regression" else ("softmax" if n_outputs > 1 else "sigmoid")
    layers.append(L.Dense(n_outputs, activation=activation))
    return tf_keras.Sequential(layers)


_CONSTRAINT_NAMES = ("min_metric", "max_metric", "max_latency_ms", "max_size_bytes")


def _feasibility(spec: TuningSpec, metric: float, latency: float, size: int) -> list[float]:
    """Optuna constraint values: each must be <= 0 for a feasible trial."""
    c = spec.constraints
    return [
        (c.min_metric - metric) if c.min_metric is not None else 0.0,
        (metric - c.max_metric) if c.max_metric is not None else 0.0,
        (latency - c.max_latency_ms) if c.max_latency_ms is not None else 0.0,
        float(size - c.max_size_bytes) if c.max_size_bytes is not None else 0.0,
    ]


def search(ctx: BuildContext, spec: TuningSpec, trials: int, seconds: float) -> tuple[optuna.Study, dict[int, bytes]]:
    x, y = finetune.train_arrays(ctx.data)
    rng = np.random.default_rng(ctx.seed)
    order = rng.permutation(len(x))
    cut = max(1, int(len(x) * 0.8))
    if cut >= len(x):
        raise TechniqueSkipped("tuning needs at least 2 training rows (80/20 split)")
    fit_idx, hold_idx = order[:cut], order[cut:]
    higher = ctx.info.higher_is_better
    artifacts: dict[int, bytes] = {}

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        hp = {
            "depth": trial.suggest_int("depth", *spec.depth),
            "dropout": _suggest_range(trial, "dropout", *spec.dropout, log_ok=False),
            "l1": _suggest_range(trial, "l1", *spec.l1),
            "l2": _suggest_range(trial, "l2", *spec.l2),
            "learning_rate": _suggest_range(trial, "learning_rate", *spec.learning_rate),
        }
        for i in range(hp["depth"]):
            hp[f"width_{i}"] = trial.suggest_categorical(f"width_{i}", spec.widths)
        model = make_model(spec, hp, tuple(x.shape[1:]), ctx.info.n_outputs, ctx.info.task)
        probabilities = ctx.info.task == "classification"
        finetune.compile_for(model, ctx.info, hp["learning_rate"], probabilities)
        finetune.fit(model, x[fit_idx], y[fit_idx], epochs=spec.epochs, seed=ctx.seed + trial.number)
        data = convert(model, spec.quantize, representative=ctx.representative)
        metric = score(predict(data, x[hold_idx]), y[hold_idx], ctx.info.task)
        p50, _ = latency_ms(data, x[hold_idx][0])
        artifacts[trial.number] = data
        constraints = _feasibility(spec, metric, p50, len(data))
        trial.set_user_attr("constraints", constraints)
        if hasattr(trial, "set_constraint"):  # optuna >= 5; older versions read constraints_func below
            for name, value in zip(_CONSTRAINT_NAMES, constraints):
                trial.set_constraint(name, value)
        trial.set_user_attr("hp", hp)
        return metric, p50, float(len(data))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    options: dict[str, Any] = {"seed": ctx.seed, "n_startup_trials": min(5, trials)}
    if not hasattr(optuna.trial.Trial, "set_constraint"):
        options["constraints_func"] = lambda t: t.user_attrs.get("constraints", [math.inf])
    sampler = optuna.samplers.TPESampler(**options)
    study = optuna.create_study(directions=["maximize" if higher else "minimize", "minimize", "minimize"], sampler=sampler)
    study.optimize(objective, n_trials=trials, timeout=seconds, catch=(ValueError, RuntimeError))
    return study, artifacts


def pareto(trials: list[Any], higher_is_better: bool) -> list[Any]:
    """Trials no other trial beats on every objective (metric, latency, size)."""
    def costs(t: Any) -> tuple[float, float, float]:
        return (-t.values[0] if higher_is_better else t.values[0], t.values[1], t.values[2])

    def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
        return all(x <= y for x, y in zip(a, b)) and a != b

    return [t for t in trials if not any(dominates(costs(o), costs(t)) for o in trials if o is not t)]


def build(ctx: BuildContext, params: TuningParams) -> list[Built]:
    ctx.require_train()
    spec = load_spec(ctx.spec_path)
    trials = params.trials or spec.budget.trials
    seconds = params.seconds or spec.budget.seconds
    started = time.monotonic()
    study, artifacts = search(ctx, spec, trials, seconds)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        raise RuntimeError("tuning: no trial completed within the budget")
    feasible = pareto([t for t in done if all(v <= 0 for v in t.user_attrs["constraints"])], ctx.info.higher_is_better)
    if not feasible:
        best = max(done, key=lambda t: t.values[0] if ctx.info.higher_is_better else -t.values[0])
        raise RuntimeError(
            f"tuning: none of {len(done)} trial(s) met the constraints {spec.constraints.model_dump(exclude_none=True)}; "
            f"best {ctx.info.metric_name} {best.values[0]:.4f} at {best.values[1]:.3f} ms, {int(best.values[2])} bytes"
        )
    feasible.sort(key=lambda t: -t.values[0] if ctx.info.higher_is_better else t.values[0])
    built = []
    for rank, t in enumerate(feasible[: spec.keep], 1):
        hp = t.user_attrs["hp"]
        figures = {
            "trial": float(t.number), "trials_done": float(len(done)), "holdout_metric": t.values[0],
            "search_seconds": time.monotonic() - started, "pareto_size": float(len(feasible)),
        }
        built.append(Built(artifacts[t.number], figures=figures, params={"hyperparameters": hp, "quantize": spec.quantize}, suffix=str(rank)))
    return built
