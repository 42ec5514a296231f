"""Runs optimization jobs: one worker subprocess per job, its JSON lines turned into job state.

    <worker_command> --model M --data D --workdir W --recipe R [--task T] [--spec S]

The default worker command is `python -m coordinator.optimize.worker` (TensorFlow loads there, never in the
coordinator). The worker prints one JSON object per line on stdout: `progress` (step, done, total),
`variant` (one finished row), `result` (the whole run) or `error` (message; exit 2 for bad input); its
stderr goes to `<jobs_dir>/<job id>/worker.log`. Inputs are the content-addressed artifacts, linked into
the job's directory under their upload names (the extension tells the worker the format, and its
messages then name the user's file). Every variant `.tflite` the worker reports is copied into the
artifact store with its digest checked.

A job ends failed with a reason when the worker reports an error, exits without a result, outlives
`timeout_s`, or the runner stops (the coordinator shuts down). Jobs survive the client: nothing here
depends on anyone watching.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from coordinator.models.artifacts import ArtifactError, ArtifactStore
from coordinator.models.jobs import INTERRUPTED, ClaimedJob, JobStore

log = logging.getLogger(__name__)

DEFAULT_WORKER = (sys.executable, "-m", "coordinator.optimize.worker")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_filename(name: str, fallback: str) -> str:
    """A plain file name for a link in the job directory: no directories, no leading dot."""
    base = _SAFE.sub("_", Path(str(name or "").replace("\\", "/")).name)
    if not base or base.startswith("."):
        base = fallback + base
    return base[:200]


class JobRunner:
    def __init__(
        self,
        jobs: JobStore,
        artifacts: ArtifactStore,
        *,
        node: str,
        workdir: Path,
        jobs_dir: Path,
        worker_command: Sequence[str] = DEFAULT_WORKER,
        workers: int = 1,
        timeout_s: float = 3 * 3600.0,
        env: dict[str, str] | None = None,
    ):
        self.jobs = jobs
        self.artifacts = artifacts
        self.node = node
        self.workdir = Path(workdir)
        self.jobs_dir = Path(jobs_dir)
        self.worker_command = list(worker_command)
        self.workers = max(1, int(workers))
        self.timeout_s = timeout_s
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._procs: dict[str, subprocess.Popen] = {}
        self._timed_out: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        failed, queued = self.jobs.recover(self.node)
        for job_id in failed:
            log.warning("optimization job %s was running when the coordinator stopped: marked failed", job_id)
        for i in range(self.workers):
            t = threading.Thread(target=self._loop, name=f"model-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        for job_id in queued:
            self.submit(job_id)

    def submit(self, job_id: str) -> None:
        self._queue.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs, end running workers (their jobs fail as interrupted), wait for the threads."""
        self._stopping.set()
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:
            _kill_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    @property
    def running(self) -> list[str]:
        with self._lock:
            return list(self._procs)

    # ------------------------------------------------------------ one job

    def _loop(self) -> None:
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                self._run(job_id)
            except Exception:  # noqa: BLE001 - one broken job must not stop the runner
                log.exception("optimization job %s: unexpected failure in the runner", job_id)

    def _run(self, job_id: str) -> None:
        claimed = self.jobs.claim(job_id)
        if claimed is None:
            return  # not queued any more (another thread or replica took it, or it failed)
        log.info("optimization job %s for %s:%s started", job_id, claimed.name, claimed.version)
        try:
            self._execute(claimed)
        except Exception as exc:  # noqa: BLE001 - the job fails with the reason; the runner goes on
            log.exception("optimization job %s failed in the coordinator", job_id)
            self.jobs.fail(job_id, f"the coordinator could not run the optimizer: {type(exc).__name__}: {exc}")

    def _inputs(self, job: ClaimedJob, jobdir: Path) -> list[str]:
        """Link the job's artifacts under their upload names; the worker's arguments."""
        inputs = job.inputs

        def link(kind: str, sha: str, name: str) -> str:
            target = jobdir / "in" / kind / safe_filename(name, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            os.symlink(self.artifacts.existing_path(sha), target)
            return str(target)

        args = ["--model", link("model", inputs.model_sha256, inputs.model_filename),
                "--data", link("data", inputs.data_sha256, inputs.data_filename),
                "--workdir", str(self.workdir)]
        if inputs.recipe_sha256:
            args += ["--recipe", link("recipe", inputs.recipe_sha256, inputs.recipe)]
        else:
            args += ["--recipe", inputs.recipe or "default"]
        if inputs.task:
            args += ["--task", inputs.task]
        if inputs.spec_sha256:
            args += ["--spec", link("spec", inputs.spec_sha256, inputs.spec_filename or "spec.toml")]
        return args

    def _execute(self, job: ClaimedJob) -> None:
        jobdir = self.jobs_dir / job.id
        jobdir.mkdir(parents=True, exist_ok=True)
        log_path = jobdir / "worker.log"
        try:
            cmd = [*self.worker_command, *self._inputs(job, jobdir)]
        except BaseException:
            _remove_links(jobdir / "in")
            raise
        outcome = _Outcome()
        with open(log_path, "ab") as log_file:
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, cwd=jobdir,
                env=self.env, start_new_session=True,  # its own process group: TF helpers die with it
            )
        with self._lock:
            self._procs[job.id] = proc
        watchdog = threading.Timer(self.timeout_s, self._time_out, (job.id, proc))
        watchdog.daemon = True
        watchdog.start()
        try:
            if self._stopping.is_set():  # stop() ran between claim and spawn
                _kill_group(proc, signal.SIGKILL)
            assert proc.stdout is not None
            for raw in proc.stdout:
                self._handle_line(job.id, raw, outcome)
            rc = proc.wait()
        finally:
            watchdog.cancel()
            with self._lock:
                self._procs.pop(job.id, None)
            _kill_group(proc, signal.SIGKILL)  # only when still running: the runner failed while reading
            if proc.stdout is not None:
                proc.stdout.close()
            _remove_links(jobdir / "in")  # before the verdict: a finished job leaves only its log
        self._conclude(job, rc, outcome, log_path)

    def _handle_line(self, job_id: str, raw: bytes, outcome: _Outcome) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            log.debug("job %s: non-JSON line from the worker: %r", job_id, raw[:200])
            return
        if not isinstance(event, dict):
            return
        kind = event.get("event")
        if kind == "progress":
            step = str(event.get("step") or "")
            self.jobs.progress(job_id, step, _int(event.get("done")), _int(event.get("total")))
        elif kind == "variant":
            self.jobs.add_variant(job_id, self._import_variant(event))
        elif kind == "result":
            outcome.result = event
        elif kind == "error":
            outcome.error = event

    def _import_variant(self, variant: dict[str, Any]) -> dict[str, Any]:
        """Copy the variant's artifacts into the store; a missing or corrupt one becomes the row's error."""
        variant = {k: v for k, v in variant.items() if k != "event"}
        try:
            sha = variant.get("sha256")
            if sha:
                self.artifacts.import_file(self._worker_artifact(sha, variant.get("path")), sha)
            compiled = (variant.get("edgetpu") or {}).get("compiled_sha256")
            if compiled:
                self.artifacts.import_file(self._worker_artifact(compiled, None), compiled)
        except (ArtifactError, OSError) as exc:
            variant["error"] = variant.get("error") or f"artifact not stored: {exc}"
        return variant

    def _worker_artifact(self, sha: str, reported: str | None) -> Path:
        # The worker's own store is <workdir>/artifacts/<sha>.tflite (coordinator/optimize/artifacts.py).
        return Path(reported) if reported else self.workdir / "artifacts" / f"{sha}.tflite"

    def _conclude(self, job: ClaimedJob, rc: int, outcome: _Outcome, log_path: Path) -> None:
        if outcome.result is not None:
            # The result is complete even if the worker then dies on its way out (TensorFlow sometimes does).
            result = dict(outcome.result)
            result["variants"] = [self._import_variant(v) for v in result.get("variants") or []]
            self.jobs.finish(job.id, result)
            log.info("optimization job %s for %s:%s done", job.id, job.name, job.version)
            return
        with self._lock:
            timed_out = job.id in self._timed_out
            self._timed_out.discard(job.id)
        if timed_out:
            message = f"timed out: the optimizer ran longer than {self.timeout_s:g} s (models.job_timeout_s) and was stopped"
        elif self._stopping.is_set():
            message = INTERRUPTED
        elif outcome.error is not None:
            text = str(outcome.error.get("message") or "unknown error")
            if outcome.error.get("kind") == "internal":
                message = f"the optimizer failed: {text} (worker log: {log_path})"
            else:
                message = text  # bad input: the worker's own message says what is wrong
        else:
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with code {rc}"
            tail = _last_line(log_path)
            message = f"the optimizer worker {how} without a result" + (f"; last output: {tail}" if tail else "") + f" (worker log: {log_path})"
        self.jobs.fail(job.id, message)
        log.info("optimization job %s for %s:%s failed: %s", job.id, job.name, job.version, message)

    def _time_out(self, job_id: str, proc: subprocess.Popen) -> None:
        with self._lock:
            if self._procs.get(job_id) is not proc:
                return
            self._timed_out.add(job_id)
        _kill_group(proc, signal.SIGKILL)


class _Outcome:
    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _kill_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return  # exited and reaped: its pid may belong to someone else by now
    try:
        os.killpg(proc.pid, sig)  # the worker's own process group (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(path: Path, limit: int = 300) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 8192))
            lines = [l.strip() for l in f.read().decode(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _remove_links(directory: Path) -> None:
    if not directory.is_dir():
        return
    for p in sorted(directory.rglob("*"), reverse=True):
        if p.is_symlink() or p.is_file():
            p.unlink(missing_ok=True)
        elif p.is_dir():
            p.rmdir()
    directory.rmdir()
