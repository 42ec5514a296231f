"""`edgectl model ...`: push a model and its data to be optimized, watch the job, list, show, plot, export.

grpc, the generated protobuf modules and rich's progress bars are imported inside the commands: `edgectl
--help` loads this module and must stay fast. TensorFlow is never imported: a SavedModel directory is
zipped here and everything else happens in the coordinator.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, Optional

import typer

from coordinator.cli.context import admin_client
from coordinator.cli.errors import CliError
from coordinator.cli.output import OutputFormat, OutputOpt, human_bytes, message_to_plain, print_json

app = typer.Typer(
    help=(
        "Push trained models to be optimized, and inspect, plot and export their variants.\n\n"
        "Examples:\n"
        "  $ edgectl model push digits.keras --name digits --data digits.npz\n"
        "  $ edgectl model show digits:1\n"
        "  $ edgectl model export digits:1 --variant int8 --out digits-int8.tflite"
    ),
    no_args_is_help=True,
)

CHUNK = 1 << 20
BUILTIN_RECIPES = ("default", "full")
RefArg = Annotated[str, typer.Argument(metavar="NAME[:VERSION]", help="Model name, optionally with a version (default: the latest).", show_default=False)]
VersionRefArg = Annotated[str, typer.Argument(metavar="NAME:VERSION", help="Model version (NAME alone: the latest).", show_default=False)]


# ---------------------------------------------------------------- push


def _zip_savedmodel(directory: Path, dest: Path) -> Path:
    """A SavedModel directory as a zip with fixed timestamps and modes: the same files give the same bytes,
    so pushing the same directory again is recognised as the same model."""
    if not (directory / "saved_model.pb").is_file():
        raise CliError(f"{directory} is a directory but not a SavedModel (no saved_model.pb in it)")
    out = dest / f"{directory.resolve().name or 'savedmodel'}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(directory).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as src, z.open(info, "w") as dst:
                for block in iter(lambda: src.read(CHUNK), b""):
                    dst.write(block)
    return out


def _readable_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise CliError(f"{what} {path} does not exist")
    if not path.is_file():
        raise CliError(f"{what} {path} is not a file")
    if not os.access(path, os.R_OK):
        raise CliError(f"{what} {path} is not readable")
    return path


def _chunks(header: Any, parts: list[tuple[str, Path]], advance) -> Iterator[Any]:
    from edgefleet.v1 import admin_pb2

    yield admin_pb2.PushModelChunk(header=header)
    for part, path in parts:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                yield admin_pb2.PushModelChunk(**{part: admin_pb2.FileChunk(data=block)})
                advance(len(block))


@app.command("push")
def push(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Trained model: .keras, .h5, .tflite, or a SavedModel directory.", show_default=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Model name.", show_default=False)],
    data: Annotated[Path, typer.Option("--data", "-d", metavar="DATA.npz", help="Arrays x_train, y_train, x_val, y_val.", show_default=False)],
    version: Annotated[
        Optional[str], typer.Option("--version", "-v", help="Version to create (default: the next integer). Versions are immutable.", show_default=False)
    ] = None,
    task: Annotated[
        Optional[str], typer.Option("--task", metavar="classification|regression", help="Default: inferred from the labels.", show_default=False)
    ] = None,
    recipe: Annotated[
        str, typer.Option("--recipe", "-r", metavar="default|full|FILE", help="Techniques to run: a built-in recipe or a recipe file (.toml, .yaml).")
    ] = "default",
    spec: Annotated[
        Optional[Path], typer.Option("--spec", metavar="FILE", help="Search space for hyperparameter tuning (.toml, .yaml).", show_default=False)
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once uploaded; the job runs on in the coordinator.")] = False,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Upload a model and its data; the coordinator builds and measures optimized variants.

    Progress is shown until the job ends. Ctrl-C stops watching, not the job.

    Pushing the same files again returns the existing version without rebuilding.

    Examples:
      $ edgectl model push digits.keras --name digits --data digits.npz
      $ edgectl model push saved_model/ --name cam --data cam.npz --recipe full --spec space.toml
      $ edgectl model push mlp.h5 -n sensor -d sensor.npz --version 2.0 --task regression --no-wait
    """
    from edgefleet.v1 import admin_pb2

    if task is not None and task not in ("classification", "regression"):
        raise CliError(f"--task must be classification or regression, not {task!r}")
    if not path.exists():
        raise CliError(f"model {path} does not exist")
    _readable_file(data, "data file")
    recipe_path: Path | None = None
    if recipe not in BUILTIN_RECIPES:
        recipe_path = Path(recipe)
        if not recipe_path.is_file():
            raise CliError(f"--recipe {recipe!r} is neither a built-in recipe (default, full) nor an existing file")
    if spec is not None:
        _readable_file(spec, "tuning spec")

    with ExitStack() as stack:
        model_path = path
        if path.is_dir():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgectl-push-")))
            model_path = _zip_savedmodel(path, tmp)
        else:
            _readable_file(path, "model")
        header = admin_pb2.PushModelHeader(
            name=name, version=version or "", filename=model_path.name, task=task or "",
            recipe="" if recipe_path else recipe, data_filename=data.name,
            recipe_filename=recipe_path.name if recipe_path else "", spec_filename=spec.name if spec else "",
        )
        parts = [("model", model_path), ("data", data)]
        if recipe_path:
            parts.append(("recipe", recipe_path))
        if spec is not None:
            parts.append(("spec", spec))
        total = sum(p.stat().st_size for _, p in parts)
        with admin_client(ctx) as admin:
            response = _upload(admin, header, parts, total)
            ref = f"{response.model}:{response.version}"
            if response.existing:
                sys.stderr.write(f"{ref} already holds these exact files: nothing new is built\n")
            else:
                sys.stderr.write(f"uploaded {ref} ({human_bytes(total)}); optimization job {response.job_id}\n")
            if no_wait:
                if output is OutputFormat.json:
                    print_json(message_to_plain(response))
                else:
                    sys.stdout.write(f"{ref} job {response.job_id}: follow it with edgectl model show {ref}\n")
                return
            final = _watch(admin, response.job_id, ref)
            if final is None or final.state != "done":
                _job_failed(ref, final)
            model = admin.call("GetModel", admin_pb2.GetModelRequest(ref=ref))
    if output is OutputFormat.json:
        plain = message_to_plain(model)
        plain["existing"] = response.existing
        print_json(plain)
    else:
        _print_version(model)


def _progress(console: Any, *columns: Any) -> Any:
    """rich progress bars on a terminal; elsewhere (pipes, CI logs) nothing but the lines printed through it."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from rich.progress import Progress

    if console.is_terminal:
        return Progress(*columns, console=console, transient=True)
    quiet = SimpleNamespace(console=console, add_task=lambda *a, **k: 0, advance=lambda *a, **k: None, update=lambda *a, **k: None)
    return nullcontext(quiet)


def _upload(admin: Any, header: Any, parts: list[tuple[str, Path]], total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

    console = Console(stderr=True, highlight=False, markup=False)
    with _progress(console, TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn()) as progress:
        bar = progress.add_task("upload", total=total)
        # No deadline: a large upload takes as long as the link needs; refusals come back at once.
        return admin.call("PushModel", _chunks(header, parts, lambda n: progress.advance(bar, n)), timeout_s=None)


def _watch(admin: Any, job_id: str, ref: str) -> Any:
    """Follow the job with a progress bar and one line per finished variant; the last JobProgress."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgefleet.v1 import admin_pb2

    last = None
    console = Console(stderr=True, highlight=False, markup=False)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with _progress(console, *columns) as progress:
            bar = progress.add_task(f"{ref}: queued", total=None)
            for msg in admin.stream("WatchJob", admin_pb2.WatchJobRequest(job_id=job_id)):
                last = msg
                if msg.HasField("variant"):
                    progress.console.print(_variant_line(msg.variant))
                    continue
                step = f" {msg.step}" if msg.step and msg.state == "running" else ""
                progress.update(bar, description=f"{ref}: {msg.state}{step}", completed=msg.done, total=msg.total or None)
    except KeyboardInterrupt:
        sys.stderr.write(f"stopped watching; job {job_id} goes on in the coordinator: edgectl model show {ref}\n")
        raise typer.Exit(130) from None
    return last


def _variant_line(v: Any) -> str:
    if v.error:
        return f"  x {v.id}: failed: {v.error}"
    if v.skipped:
        return f"  - {v.id}: skipped: {v.skipped}"
    return (
        f"  + {v.id}: {human_bytes(v.size_bytes)}, metric {_metric(v.metric)}, "
        f"p50 {_ms(v.latency_p50_ms)} ms, Edge TPU {v.edgetpu.status or '-'}"
    )


def _job_failed(ref: str, final: Any) -> None:
    if final is None:
        raise CliError(f"lost track of the job of {ref} (the coordinator sent nothing); see edgectl model show {ref}")
    if final.state == "failed":
        raise CliError(f"optimizing {ref} failed: {final.message or 'no reason given'}")
    raise CliError(f"stopped following {ref} while {final.state}; the job goes on: edgectl model show {ref}")


# ---------------------------------------------------------------- list / show


def _metric(value: float) -> str:
    return f"{value:.4f}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value else "-"


def _best(model: Any) -> str:
    ok = [v for v in model.variants if v.sha256 and not v.error and not v.skipped]
    if not ok:
        return "-"
    pick = min if model.metric_name == "mae" else max
    best = pick(ok, key=lambda v: v.metric)
    return f"{best.metric:.4f} ({best.id})"


@app.command("list")
def list_models(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(metavar="[NAME]", help="Only the versions of this model.", show_default=False)] = None,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """List model versions with their state and best variant.

    Examples:
      $ edgectl model list
      $ edgectl model list digits -o json
    """
    from coordinator.cli.output import new_table, print_table, relative_age
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        response = admin.call("ListModels", admin_pb2.ListModelsRequest(name=name or ""))
    if output is OutputFormat.json:
        print_json([message_to_plain(m) for m in response.models])
        return
    if not response.models:
        sys.stderr.write("No models found.\n")
        return
    table = new_table("NAME", "VERSION", "STATE", "TASK", "VARIANTS", "BEST", "FORMAT", "CREATED")
    for m in response.models:
        ok = sum(1 for v in m.variants if v.sha256 and not v.error and not v.skipped)
        best = _best(m)
        table.add_row(
            m.name, m.version, m.state, (f"{m.task} ({m.metric_name})" if m.metric_name else m.task) or "-",
            f"{ok}/{len(m.variants)}" if m.variants else "-",
            best if best == "-" else f"{m.metric_name} {best}",
            m.source_format or "-", relative_age(m.created_at),
        )
    print_table(table)


@app.command("show")
def show(ctx: typer.Context, ref: RefArg, output: OutputOpt = OutputFormat.table) -> None:
    """Show a model version and every variant: size, gzip size, metric, latency, memory, Edge TPU fit.

    Examples:
      $ edgectl model show digits
      $ edgectl model show digits:3 -o json
    """
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        model = admin.call("GetModel", admin_pb2.GetModelRequest(ref=ref))
    if output is OutputFormat.json:
        print_json(message_to_plain(model))
    else:
        _print_version(model)


def _figures_text(v: Any) -> str:
    f = dict(v.figures)
    parts = []
    if f.get("sparsity", 0) >= 0.05:  # below that it is the odd zero weight, not pruning
        parts.append(f"sparsity {f['sparsity']:.2f}")
    if "clusters" in f:
        parts.append(f"clusters {int(f['clusters'])}")
    if v.input_features:
        parts.append(f"features {len(v.input_features)}")
    elif "n_features" in f:
        parts.append(f"features {int(f['n_features'])}")
    if f.get("macs"):
        parts.append(f"MACs {int(f['macs']):,}")
    return ", ".join(parts)


def _note(v: Any) -> str:
    if v.error:
        return f"error: {v.error}"
    if v.skipped:
        return f"skipped: {v.skipped}"
    notes = [_figures_text(v)]
    if v.edgetpu.status in ("incompatible", "compatible") and v.edgetpu.detail:
        notes.append(f"Edge TPU: {v.edgetpu.detail}")
    return "; ".join(n for n in notes if n) or "-"


def _print_version(m: Any) -> None:
    from coordinator.cli.output import new_table, print_table, relative_age, timestamp_iso

    lines = [
        f"{m.name}:{m.version}  {m.state}",
        f"  task:     {m.task or 'inferred'}" + (f" (metric: {m.metric_name})" if m.metric_name else ""),
        f"  model:    {m.model_filename} ({', '.join(x for x in (m.source_format, m.model_flavor) if x) or 'format pending'}), "
        f"{human_bytes(m.model_bytes)}, sha256 {m.sha256}",
        f"  data:     sha256 {m.data_sha256}",
        f"  recipe:   {m.recipe}",
        f"  job:      {m.job_id}",
        f"  created:  {timestamp_iso(m.created_at)} ({relative_age(m.created_at)})",
    ]
    if m.baseline_id:
        lines.append(f"  baseline: {m.baseline_id}")
    if m.error:
        lines.append(f"  error:    {' '.join(m.error.split())}")
    for note in m.notes:
        lines.append(f"  note:     {note}")
    sys.stdout.write("\n".join(lines) + "\n")
    if not m.variants:
        sys.stdout.write("\nno variants yet\n")
        return
    metric = (m.metric_name or "metric").upper()
    table = new_table("ID", "TECHNIQUE", "SIZE", "GZIP", metric, "P50 MS", "P95 MS", "MEMORY", "EDGE TPU", "NOTE")
    for v in m.variants:
        measured = bool(v.sha256) and not v.error and not v.skipped
        table.add_row(
            v.id, v.technique,
            human_bytes(v.size_bytes) if measured else "-",
            human_bytes(v.gzip_bytes) if measured else "-",
            _metric(v.metric) if measured else "-",
            _ms(v.latency_p50_ms) if measured else "-",
            _ms(v.latency_p95_ms) if measured else "-",
            human_bytes(v.peak_memory_bytes) if measured else "-",
            (v.edgetpu.status or "-") if measured else "-",
            _note(v),
        )
    sys.stdout.write("\n")
    print_table(table)


# ---------------------------------------------------------------- profile


@app.command("profile")
def profile(
    ctx: typer.Context,
    ref: VersionRefArg,
    select: Annotated[Optional[str], typer.Option("--select", "-s", help="Devices whose labels match all of k=v,k2=v2 (default: every device).", show_default=False)] = None,
    per_class: Annotated[int, typer.Option("--per-class", min=1, max=100, help="Devices of each hardware class that benchmark the variants.")] = 2,
    output: OutputOpt = OutputFormat.table,
) -> None:
    """Benchmark the variants on a few devices of each hardware class, without activating them.

    The devices report load time, p50/p95 latency and peak memory; the coordinator keeps the latency per
    (variant, hardware class), and `edgectl rollout plan|create` choose by it from then on.

    Examples:
      $ edgectl model profile digits:3 --select role=camera
      $ edgectl model profile digits:3 --select site=lab --per-class 1 -o json
    """
    from edgefleet.v1 import admin_pb2

    request = admin_pb2.ProfileModelRequest(ref=ref, selector=(select or "").strip(), per_class=per_class)
    with admin_client(ctx) as admin:
        response = admin.call("ProfileModel", request, timeout_s=60)
    if output is OutputFormat.json:
        print_json(message_to_plain(response))
        return
    sys.stdout.write(
        f"profile request {response.request_id} sent to {len(response.device_ids)} device(s): {', '.join(response.device_ids)}\n"
        f"results arrive as the devices finish; `edgectl rollout plan {ref}` uses them\n"
    )


# ---------------------------------------------------------------- plot / export


def _download(chunks: Iterator[Any], out: Path, check: Callable[[int, str], None]) -> tuple[int, str]:
    """Write FileChunks through a temporary file beside `out`; `check(size, sha256)` raises CliError to refuse
    them. `out` appears only when complete and accepted; nothing is left behind otherwise."""
    out = out.expanduser()
    parent = out.parent
    if not parent.is_dir():
        raise CliError(f"cannot write {out}: the directory {parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk.data)
                h.update(chunk.data)
                size += len(chunk.data)
        check(size, h.hexdigest())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return size, h.hexdigest()


@app.command("plot")
def plot(
    ctx: typer.Context,
    ref: VersionRefArg,
    out: Annotated[Path, typer.Option("--out", metavar="FILE.png", help="Where to write the PNG.", show_default=False)],
) -> None:
    """Plot the metric against latency and against size, Pareto front marked (rendered by the coordinator).

    Examples:
      $ edgectl model plot digits:3 --out digits.png
    """
    from edgefleet.v1 import admin_pb2

    def check(size: int, _sha: str) -> None:
        if size == 0:
            raise CliError(f"the coordinator sent an empty plot for {ref}")

    with admin_client(ctx) as admin:
        size, _ = _download(admin.stream("PlotModel", admin_pb2.GetModelRequest(ref=ref), timeout_s=120), out, check)
    sys.stdout.write(f"wrote {out} ({human_bytes(size)})\n")


@app.command("export")
def export(
    ctx: typer.Context,
    ref: VersionRefArg,
    variant: Annotated[str, typer.Option("--variant", metavar="ID", help="Variant id (see edgectl model show).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", metavar="FILE.tflite", help="Where to write the model.", show_default=False)],
) -> None:
    """Download one variant's .tflite; its bytes are checked against the variant's SHA-256.

    Examples:
      $ edgectl model export digits:3 --variant int8 --out digits-int8.tflite
    """
    from edgefleet.v1 import admin_pb2

    with admin_client(ctx) as admin:
        model = admin.call("GetModel", admin_pb2.GetModelRequest(ref=ref))
        exact = f"{model.name}:{model.version}"  # pin the version: NAME alone could move between the calls
        wanted = next((v for v in model.variants if v.id == variant), None)
        if wanted is None:
            known = ", ".join(v.id for v in model.variants) or "none"
            raise CliError(f"{exact} has no variant {variant!r} (variants: {known})")
        if not wanted.sha256:
            why = wanted.error or wanted.skipped or "it has no artifact"
            raise CliError(f"variant {variant} of {exact} cannot be exported: {' '.join(why.split())}")

        def check(_size: int, sha: str) -> None:
            if sha != wanted.sha256:
                raise CliError(f"the download of {exact} {variant} is corrupt: sha256 {sha}, expected {wanted.sha256}; nothing written")

        request = admin_pb2.ExportVariantRequest(ref=exact, variant_id=variant)
        size, sha = _download(admin.stream("ExportVariant", request, timeout_s=None), out, check)
    sys.stdout.write(f"exported {exact} {variant} ({human_bytes(size)}, sha256 {sha}) to {out}\n")
