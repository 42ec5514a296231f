"""Recipes: which techniques to run, with which parameters.

`default`: fp32, float16, dynamic range, int8, magnitude pruning (50 % and 80 %) + int8, clustering + int8,
QAT int8 (when training data exists), PCA and RFE + int8 (1-D feature-vector inputs only).
`full`: default plus int16x8, structured pruning, L2 and L1+pruning regularized fine-tunes, and tuning.

A recipe file (TOML or YAML) lists steps; each names a technique and may set its parameters and an id:

    # recipe.toml
    [[techniques]]
    technique = "int8"
    [[techniques]]
    technique = "pruning"
    sparsity = 0.9

    # recipe.yaml
    techniques:
      - int8
      - {technique: pruning, sparsity: 0.9, id: pruned90}

No TensorFlow here: builders are named by import path and loaded only when a step runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from coordinator.optimize.errors import RecipeError

Quantize = Literal["int8", "fp32", "float16", "dynamic"]
_QSUFFIX = {"int8": "int8", "fp32": "fp32", "float16": "fp16", "dynamic": "dyn"}


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PtqParams(Params):
    samples: int = Field(300, ge=100, le=500, description="representative rows drawn from x_train for calibration")


class QatParams(Params):
    # Fake-quant ranges have to settle: too small a rate (1e-5) ends below post-training int8.
    epochs: int = Field(5, ge=1, description="fine-tune epochs with fake-quant nodes")
    learning_rate: float = Field(5e-4, gt=0)


class PruningParams(Params):
    sparsity: float = Field(0.8, gt=0, lt=1, description="fraction of kernel weights set to zero")
    epochs: int = Field(8, ge=1, description="the ramp takes the first 60 %, the rest recovers accuracy")
    learning_rate: float = Field(1e-3, gt=0)
    quantize: Quantize = "int8"


class ClusteringParams(Params):
    clusters: int = Field(16, ge=2, le=256, description="distinct values per kernel")
    epochs: int = Field(3, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    quantize: Quantize = "int8"


class StructuredParams(Params):
    ratio: float = Field(0.5, gt=0, lt=1, description="fraction of units/filters removed from each hidden layer")
    epochs: int = Field(6, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    quantize: Quantize = "int8"


class RegularizationParams(Params):
    l1: float = Field(0.0, ge=0)
    l2: float = Field(0.0, ge=0)
    epochs: int = Field(4, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    prune: float | None = Field(None, gt=0, lt=1, description="then prune to this sparsity")
    prune_epochs: int = Field(8, ge=1)
    quantize: Quantize = "int8"

    @model_validator(mode="after")
    def _some_penalty(self) -> RegularizationParams:
        if self.l1 == 0 and self.l2 == 0:
            raise ValueError("set l1 and/or l2 above 0")
        return self


class PcaParams(Params):
    variance: float = Field(0.95, gt=0, le=1, description="keep the fewest components explaining this much variance")
    components: int | None = Field(None, ge=1, description="or exactly this many components")
    epochs: int = Field(6, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    quantize: Quantize = "int8"


class RfeParams(Params):
    features: float = Field(0.5, gt=0, description="fraction (<= 1) or count (> 1) of input features to keep")
    epochs: int = Field(6, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    quantize: Quantize = "int8"


class TuningParams(Params):
    trials: int | None = Field(None, ge=1, description="overrides the spec's budget")
    seconds: float | None = Field(None, gt=0, description="overrides the spec's budget")


@dataclass(frozen=True)
class Technique:
    name: str
    params: type[Params]
    builder: str  # "module:function", imported when the step runs
    variant_id: Callable[[Any], str]


def _pct(x: float) -> int:
    return int(round(x * 100))


TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in [
        Technique("fp32", PtqParams, "coordinator.optimize.ptq:build_fp32", lambda p: "fp32"),
        Technique("float16", PtqParams, "coordinator.optimize.ptq:build_float16", lambda p: "fp16"),
        Technique("dynamic_range", PtqParams, "coordinator.optimize.ptq:build_dynamic", lambda p: "dynamic"),
        Technique("int8", PtqParams, "coordinator.optimize.ptq:build_int8", lambda p: "int8"),
        Technique("int16x8", PtqParams, "coordinator.optimize.ptq:build_int16x8", lambda p: "int16x8"),
        Technique("qat", QatParams, "coordinator.optimize.qat:build", lambda p: "qat_int8"),
        Technique("pruning", PruningParams, "coordinator.optimize.pruning:build",
                  lambda p: f"pruned{_pct(p.sparsity)}_{_QSUFFIX[p.quantize]}"),
        Technique("clustering", ClusteringParams, "coordinator.optimize.clustering:build",
                  lambda p: f"clustered{p.clusters}_{_QSUFFIX[p.quantize]}"),
        Technique("structured_pruning", StructuredParams, "coordinator.optimize.structured:build",
                  lambda p: f"structured{_pct(p.ratio)}_{_QSUFFIX[p.quantize]}"),
        Technique("regularization", RegularizationParams, "coordinator.optimize.regularization:build",
                  lambda p: ("l1" if p.l1 else "") + ("l2" if p.l2 else "")
                  + (f"_pruned{_pct(p.prune)}" if p.prune else "") + f"_{_QSUFFIX[p.quantize]}"),
        Technique("pca", PcaParams, "coordinator.optimize.reduction:build_pca", lambda p: f"pca_{_QSUFFIX[p.quantize]}"),
        Technique("rfe", RfeParams, "coordinator.optimize.reduction:build_rfe", lambda p: f"rfe_{_QSUFFIX[p.quantize]}"),
        Technique("tuning", TuningParams, "coordinator.optimize.tuning:build", lambda p: "tuned"),
    ]
}
ALIASES = {"fp16": "float16", "dynamic": "dynamic_range", "structured": "structured_pruning", "qat_int8": "qat"}
TABULAR_ONLY = {"pca", "rfe"}


@dataclass(frozen=True)
class Step:
    technique: str
    params: Params
    id: str


def _step(name: str, params: dict[str, Any] | None = None, step_id: str | None = None, where: str = "") -> Step:
    key = ALIASES.get(name, name)
    if key not in TECHNIQUES:
        hint = " (Edge TPU analysis runs by itself on every int8 variant)" if key == "edgetpu" else ""
        raise RecipeError(f"unknown technique {name!r}{where}{hint}; known: {', '.join(TECHNIQUES)}")
    tech = TECHNIQUES[key]
    try:
        p = tech.params(**(params or {}))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors())
        raise RecipeError(f"technique {name!r}{where}: {problems}") from exc
    return Step(key, p, step_id or tech.variant_id(p))


def default_steps(tabular: bool) -> list[Step]:
    steps = [
        _step("fp32"), _step("float16"), _step("dynamic_range"), _step("int8"),
        _step("pruning", {"sparsity": 0.5}), _step("pruning", {"sparsity": 0.8}),
        _step("clustering", {"clusters": 16}), _step("qat"),
    ]
    if tabular:
        steps += [_step("pca"), _step("rfe")]
    return steps


def full_steps(tabular: bool) -> list[Step]:
    return default_steps(tabular) + [
        _step("int16x8"),
        _step("structured_pruning", {"ratio": 0.5}),
        _step("regularization", {"l2": 1e-4}),
        _step("regularization", {"l1": 1e-5, "prune": 0.8}),
        _step("tuning"),
    ]


def load_recipe(recipe: str | Path, *, tabular: bool) -> tuple[str, list[Step]]:
    """(recipe name, steps). Steps always start with the fp32 baseline; ids are unique."""
    if isinstance(recipe, str) and recipe in ("default", "full"):
        name, steps = recipe, (default_steps if recipe == "default" else full_steps)(tabular)
    else:
        path = Path(recipe)
        if not path.is_file():
            raise RecipeError(f"unknown recipe {str(recipe)!r}: expected 'default', 'full' or a recipe file (.toml, .yaml)")
        name, steps = path.name, _parse_file(path)
    if not any(s.technique == "fp32" for s in steps):
        steps.insert(0, _step("fp32"))  # every run measures the plain fp32 conversion: the reference row
    else:
        steps.sort(key=lambda s: s.technique != "fp32")
    seen: dict[str, int] = {}
    unique = []
    for s in steps:
        n = seen.get(s.id, 0)
        seen[s.id] = n + 1
        unique.append(s if n == 0 else Step(s.technique, s.params, f"{s.id}_{n + 1}"))
    return name, unique


def _parse_file(path: Path) -> list[Step]:
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            doc: Any = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            doc = yaml.safe_load(text)
        else:
            raise RecipeError(f"recipe file {path.name}: expected a .toml or .yaml file")
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise RecipeError(f"recipe file {path.name} does not parse: {exc}") from exc
    entries = doc.get("techniques") if isinstance(doc, dict) else doc
    if not isinstance(entries, list) or not entries:
        raise RecipeError(f"recipe file {path.name}: expected a non-empty 'techniques' list")
    steps = []
    for i, entry in enumerate(entries, 1):
        where = f" (step {i} of {path.name})"
        if isinstance(entry, str):
            steps.append(_step(entry, where=where))
            continue
        if not isinstance(entry, dict):
            raise RecipeError(f"recipe file {path.name}: step {i} must be a technique name or a table")
        entry = dict(entry)
        name = entry.pop("technique", None) or entry.pop("name", None)
        if not name:
            raise RecipeError(f"recipe file {path.name}: step {i} has no 'technique'")
        step_id = entry.pop("id", None)
        steps.append(_step(str(name), entry, step_id, where))
    return steps


def rfe_count(features: float, n: int) -> int:
    """Number of features RFE keeps: a fraction of n when <= 1, else a count (capped at n - 1)."""
    k = math.ceil(features * n) if features <= 1 else int(features)
    return max(1, min(k, n - 1))
