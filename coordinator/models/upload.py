"""Receive a PushModel stream: a header, then the files in FileChunk parts, spooled into the artifact store.

Checks made here, before anything is stored or any worker runs, so the push is refused at once:
- the header (name, version, task, recipe) and that a model and data were sent;
- sizes against `models.max_model_bytes` / `max_data_bytes`, while receiving (UploadTooLarge);
- the `.npz` data on its own (arrays present, finite, non-empty; coordinator/optimize/data.py, numpy only)
  when it is at most INLINE_DATA_CHECK_BYTES (bigger files are checked by the worker, to keep the
  coordinator's memory flat);
- a recipe file (known techniques, valid parameters; coordinator/optimize/recipes.py).
What needs the model itself (is it a model, do the shapes fit, SELECT_TF_OPS) is the worker's job.
A refused upload leaves nothing behind.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from coordinator.models.artifacts import ArtifactStore, ArtifactTooLarge, Incoming
from coordinator.models.records import BadRef, check_model_name, check_version
from coordinator.models.repository import Inputs
from coordinator.models.runner import safe_filename

INLINE_DATA_CHECK_BYTES = 256 * 1024**2
MAX_SMALL_FILE_BYTES = 1024**2  # recipe and tuning spec
BUILTIN_RECIPES = ("default", "full")
TASKS = ("classification", "regression")


class UploadRejected(ValueError):
    """The push is refused; the message says what was wrong."""


class UploadTooLarge(UploadRejected):
    pass


@dataclass(frozen=True)
class Upload:
    name: str
    version: str | None
    inputs: Inputs


def receive_push(
    chunks: Iterable[Any],
    artifacts: ArtifactStore,
    *,
    max_model_bytes: int,
    max_data_bytes: int,
) -> Upload:
    """Consume the PushModelChunk stream; returns what was stored, or raises UploadRejected."""
    it = iter(chunks)
    first = next(it, None)
    if first is None or first.WhichOneof("part") != "header":
        raise UploadRejected("a push must start with its header (name, file name, recipe)")
    header = first.header
    name, version, task, recipe = _check_header(header)
    names = {
        "model": safe_filename(header.filename, "model"),
        "data": safe_filename(header.data_filename or "data.npz", "data"),
        "recipe": safe_filename(header.recipe_filename or "recipe.toml", "recipe"),
        "spec": safe_filename(header.spec_filename or "spec.toml", "spec"),
    }
    limits = {"model": max_model_bytes, "data": max_data_bytes, "recipe": MAX_SMALL_FILE_BYTES, "spec": MAX_SMALL_FILE_BYTES}
    files: dict[str, Incoming] = {}
    try:
        for message in it:
            part = message.WhichOneof("part")
            if part == "header" or part is None:
                raise UploadRejected("a push has exactly one header, first")
            incoming = files.get(part)
            if incoming is None:
                what = f"{part} {names[part]}" if part in ("model", "data") else f"{part} file {names[part]}"
                incoming = files[part] = artifacts.incoming(what, limits[part], names[part])
            incoming.write(getattr(message, part).data)
        inputs = _check_files(files, names, recipe, task)
        shas = {part: f.commit() for part, f in files.items()}
    except ArtifactTooLarge as exc:
        raise UploadTooLarge(str(exc)) from None
    finally:
        for f in files.values():
            f.discard()  # a no-op for committed files
    return Upload(name, version, _with_shas(inputs, shas))


def _check_header(header: Any) -> tuple[str, str | None, str, str]:
    try:
        name = check_model_name(header.name.strip())
        version = header.version.strip() or None
        if version is not None:
            check_version(version)
    except BadRef as exc:
        raise UploadRejected(str(exc)) from None
    if not header.filename.strip():
        raise UploadRejected("the header has no model file name (its extension tells the format)")
    task = header.task.strip()
    if task and task not in TASKS:
        raise UploadRejected(f"unknown task {task!r}; expected classification or regression (or none: inferred)")
    recipe = header.recipe.strip()
    if recipe and recipe not in BUILTIN_RECIPES:
        raise UploadRejected(f"unknown recipe {recipe!r}: expected default, full, or a recipe file")
    return name, version, task, recipe


def _check_files(files: dict[str, Incoming], names: dict[str, str], recipe: str, task: str) -> Inputs:
    model, data = files.get("model"), files.get("data")
    if model is None or model.size == 0:
        raise UploadRejected(f"the model {names['model']} is empty or was not sent")
    if data is None or data.size == 0:
        raise UploadRejected("no data was sent: a push needs an .npz with x_train, y_train, x_val, y_val")
    if recipe and "recipe" in files:
        raise UploadRejected(f"both the built-in recipe {recipe!r} and a recipe file were sent; choose one")
    tabular = False
    if data.size <= INLINE_DATA_CHECK_BYTES:
        tabular = _check_data(data)
    if "recipe" in files:
        _check_recipe(files["recipe"], tabular)
    spec = files.get("spec")
    return Inputs(
        model_filename=names["model"], model_sha256="", model_bytes=model.size,
        data_filename=names["data"], data_sha256="", data_bytes=data.size,
        recipe=names["recipe"] if "recipe" in files else (recipe or "default"),
        spec_filename=names["spec"] if spec is not None else "", task=task,
    )


def _check_data(data: Incoming) -> bool:
    """Whether the samples are feature vectors (the default recipe then adds PCA/RFE)."""
    data.close()
    from coordinator.optimize.data import load_dataset
    from coordinator.optimize.errors import OptimizeInputError

    try:
        dataset = load_dataset(data.path)
    except OptimizeInputError as exc:
        raise UploadRejected(str(exc)) from None
    return dataset.is_tabular


def _check_recipe(recipe: Incoming, tabular: bool) -> None:
    recipe.close()
    from coordinator.optimize.errors import OptimizeInputError
    from coordinator.optimize.recipes import load_recipe

    try:
        load_recipe(recipe.path, tabular=tabular)
    except OptimizeInputError as exc:
        raise UploadRejected(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UploadRejected(f"recipe file {recipe.path.name} cannot be read: {exc}") from None


def _with_shas(inputs: Inputs, shas: dict[str, str]) -> Inputs:
    return replace(
        inputs, model_sha256=shas["model"], data_sha256=shas["data"],
        recipe_sha256=shas.get("recipe"), spec_sha256=shas.get("spec"),
    )
