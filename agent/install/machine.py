"""The install state machine: a signed manifest in, a model activated (or not), every step reported.

    DOWNLOADING -> VERIFYING -> STAGED -> TRIAL -> COMMITTED
         ^            |            |         \\-> ROLLING_BACK -> ROLLED_BACK
         \\-- sha256 --/            \\-> FAILED (never activated: the old model keeps running)

Each state is written to the ledger before the agent acts on it, and each entry into a state is
counted: an install that keeps crashing the agent in one state fails after `max_state_attempts`
instead of looping. `resume()` picks up whatever state a crash left:

    downloading   fetch only the chunks still missing
    verifying     hash the downloaded blobs again (or the ones already moved into the slot)
    staged        hash the slot's files, re-run load + acceptance, then activate
    trial         finish the pointer swap if it did not happen; count the restart (a clean stop
                  is not one); after trial.max_restarts restarts within the trial, roll back
                  (crash loop); otherwise the trial starts its time and inference count afresh
    rolling_back  finish restoring the previous slot

Every state change is reported; download progress (in quarters) only when the last report is at least
`progress_interval_s` old, so a fast download costs the coordinator no progress events.

Not thread-safe: one caller at a time (agent.deployer.Deployer serializes calls under a lock).

A signed rollback order cancels an install of its rollout that is not activated yet, and puts the
previous slot back when the active model (on trial or committed) came from that rollout (from any
rollout when the order names none); otherwise it reports that there was nothing to roll back.

Policy for a deploy that arrives while another install is in progress: before activation
(downloading, verifying, staged) the newer sequence supersedes the old install, which is reported
FAILED ("superseded"); during a trial the new deploy is refused (CommandRejected + FAILED) and the
coordinator sends it again after the trial ends. So two models are never half-installed at once.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from agent.identity import Identity
from agent.install import ledger as L
from agent.install.acceptance import prepare as prepare_acceptance, run_acceptance
from agent.install.crash import CrashPoints
from agent.install.ledger import Job, Ledger, Outcome
from agent.install.profiling import Profiler
from agent.install.report import active_model_of, blob_total, progress, rejected
from agent.install.storage import space_problem
from agent.manifest import ManifestRejected, ManifestVerifier
from agent.runtime.backend import Backend
from agent.runtime.errors import ModelLoadError
from agent.slots import SlotError, SlotStore, file_names
from agent.transfer import BlobDownload, Fetcher, TransferError
from edgefleet import envelope, topics
from edgefleet.v1 import commands_pb2, device_pb2, events_pb2, hardware_pb2, manifest_pb2, transfer_pb2

log = logging.getLogger(__name__)

DEFAULT_MAX_RESTARTS = 3          # trial.max_restarts = 0 means this
DEFAULT_MAX_STATE_ATTEMPTS = 5
DEFAULT_MAX_VERIFY_FAILURES = 3

# (ok, reason, figures): the trial judge's verdict when the trial window ends; None: not yet.
TrialVerdict = tuple[bool, str, Mapping[str, float]]


class Installer:
    def __init__(
        self,
        state_dir: Path,
        identity: Identity,
        publish: Callable[[str, bytes, int], object],
        emit: Callable[[events_pb2.Event], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        storage_budget_bytes: int | None = None,
        window: int = 8,
        chunk_timeout_s: float = 10.0,
        backend_factory: Callable[[manifest_pb2.ModelManifest], Backend] | None = None,
        hardware: Callable[[], hardware_pb2.HardwareProfile | None] | None = None,
        on_active_changed: Callable[[Path | None, manifest_pb2.ModelManifest | None], None] | None = None,
        trial_judge: Callable[[manifest_pb2.ModelManifest], TrialVerdict | None] | None = None,
        auto_end_trial: bool = True,
        submit_profile: Callable[[Callable[[], None]], None] | None = None,
        run_profile: Callable | None = None,
        crash_points: CrashPoints | None = None,
        max_state_attempts: int = DEFAULT_MAX_STATE_ATTEMPTS,
        max_verify_failures: int = DEFAULT_MAX_VERIFY_FAILURES,
        acceptance_runs: int = 30,
        progress_interval_s: float = 1.0,
    ) -> None:
        """progress_interval_s: a download's progress (in quarters) is reported only when the install's last
        report is at least this old; state changes are always reported."""
        if progress_interval_s < 0:
            raise ValueError(f"progress_interval_s must not be negative, got {progress_interval_s}")
        self.state_dir = Path(state_dir)
        self.device_id = identity.device_id
        self._publish = publish
        self._emit_fn = emit
        self._clock = clock
        self.storage_budget_bytes = storage_budget_bytes
        self._backend_factory = backend_factory or self._default_backend
        self._hardware = hardware or (lambda: None)
        self._on_active_changed = on_active_changed
        self.trial_judge = trial_judge
        self.auto_end_trial = auto_end_trial
        self._crash = crash_points or CrashPoints()
        self.max_state_attempts = max_state_attempts
        self.max_verify_failures = max_verify_failures
        self.acceptance_runs = acceptance_runs
        self.progress_interval_s = progress_interval_s

        self.verifier = ManifestVerifier(identity.public_key, identity.key_id, identity.device_id)
        self.slots = SlotStore(self.state_dir / "models")
        self.ledger = Ledger(self.state_dir / "install")
        if self.ledger.recovered:
            self._recover_ledger()
        self.blob_dir = self.state_dir / "install" / "blobs"
        self.fetcher = Fetcher(self._send_request, clock=clock, window=window, timeout_s=chunk_timeout_s)
        self.profiler = Profiler(self.state_dir / "install" / "profiling", self.fetcher, self.verifier, self._emit,
                                 slots=self.slots, hardware=self._hardware, submit=submit_profile or (lambda fn: fn()),
                                 run_profile=run_profile)
        self._downloads: dict[str, BlobDownload] = {}
        self._quarter = 0                      # download progress reported in quarters
        self._reported_at: float | None = None  # when the last install report was emitted (clock)
        self._trial_started: float | None = None
        self._trial_inferences = 0
        # (slot, model sha256) this process hashed and sealed moments ago: STAGED need not hash it again.
        # Not persisted: after a restart the slot's files are hashed again before they are used.
        self._sealed: tuple[str, str] | None = None
        # (model sha256, figures) of the last acceptance test this process passed: the serving side may take
        # its golden-set score at activation instead of scoring the same model on the same set again.
        self._accepted: tuple[str, dict[str, float]] | None = None

    def _recover_ledger(self) -> None:
        """A damaged ledger: the sequence floor comes back from the manifests the slots hold (no
        replay below what this device has installed); an install in progress is forgotten."""
        floor = max((c.manifest.sequence for c in map(self.slots.content, ("slot-a", "slot-b")) if c is not None), default=0)
        self.ledger.last_sequence = floor
        self.ledger.save()
        self._emit(events_pb2.Event(notice=events_pb2.AgentNotice(
            code="install_ledger_corrupt", message=f"{self.ledger.recovered}; sequence floor restored to {floor}")))

    # -- wiring -------------------------------------------------------------------------------

    def _default_backend(self, manifest: manifest_pb2.ModelManifest) -> Backend:
        from agent.runtime.plugins import select_backend

        hw = self._hardware()
        kinds = [a.kind for a in hw.accelerators] if hw is not None else []
        return select_backend(kinds, requires_delegate=manifest.requires_delegate or None)

    def _latency_factor(self) -> float:
        hw = self._hardware()
        return hw.latency_factor if hw is not None and hw.simulated and hw.latency_factor > 0 else 1.0

    def _send_request(self, request: transfer_pb2.BlobRequest) -> None:
        try:
            self._publish(topics.blob_req(self.device_id), envelope.encode(self.device_id, blob_request=request), 1)
        except Exception as exc:  # noqa: BLE001 - the chunk timeout asks again
            log.warning("could not send a chunk request for %s: %s", request.sha256[:12], exc)

    def _emit(self, event: events_pb2.Event) -> None:
        try:
            self._emit_fn(event)
        except Exception:  # noqa: BLE001 - a report that cannot be queued must not stop the install
            log.exception("could not emit %s event", event.WhichOneof("kind"))

    def _report(self, manifest: manifest_pb2.ModelManifest | None, state: str, **kw) -> None:
        if state in (L.FAILED, L.ROLLED_BACK) and kw.get("reason"):
            log.warning("install %s: %s", state, kw["reason"])
        else:
            log.info("install %s %s:%s %s", state, manifest.model if manifest else "", manifest.version if manifest else "",
                     kw.get("reason", ""))
        self._reported_at = self._clock()
        self._emit(progress(manifest, state, active=self.active_manifest(), **kw))

    def _reject(self, command_id: str, reason: str) -> None:
        log.warning("refused command %s: %s", command_id, reason)
        self._emit(rejected(command_id, reason))

    def _notify_active(self) -> None:
        if self._on_active_changed is None:
            return
        content = self.slots.active()
        try:
            self._on_active_changed(content.model_path if content else None, content.manifest if content else None)
        except Exception:  # noqa: BLE001
            log.exception("on_active_changed callback failed")

    # -- queries ------------------------------------------------------------------------------

    @property
    def last_sequence(self) -> int:
        return self.ledger.last_sequence

    def active_manifest(self) -> manifest_pb2.ModelManifest | None:
        content = self.slots.active()
        return content.manifest if content else None

    def active_model(self) -> device_pb2.ActiveModel | None:
        return active_model_of(self.active_manifest())

    def active_model_path(self) -> Path | None:
        content = self.slots.active()
        return content.model_path if content else None

    def accepted_figures(self, sha256: str) -> dict[str, float] | None:
        """The figures (metric, golden_count, p95_ms...) of the acceptance test this process ran on the model
        with this SHA-256 before activating it; None when it ran none (e.g. activated before a restart)."""
        if self._accepted is None or self._accepted[0] != sha256:
            return None
        return dict(self._accepted[1])

    def trial_active(self) -> bool:
        job = self.ledger.job
        return job is not None and job.state == L.TRIAL

    def trial_policy(self) -> manifest_pb2.TrialPolicy | None:
        return self.ledger.job.manifest.trial if self.trial_active() else None

    @property
    def job(self) -> Job | None:
        return self.ledger.job

    # -- commands -----------------------------------------------------------------------------

    def handle_command(self, command: commands_pb2.Command) -> None:
        kind = command.WhichOneof("kind")
        if kind == "deploy":
            self._deploy(command.command_id, command.deploy.manifest)
        elif kind == "rollback":
            self._rollback_order(command.command_id, command.rollback)
        elif kind == "profile":
            self.profiler.start(command.command_id, command.profile)

    def _deploy(self, command_id: str, signed: manifest_pb2.SignedManifest) -> None:
        if self.ledger.seen(command_id):
            log.debug("deploy %s seen before (QoS 1 redelivery or a coordinator re-send)", command_id)
            out = self.ledger.last_outcome
            if out is not None and out.command_id == command_id:
                # The coordinator re-sends to a device it has not heard from: the first report may be lost.
                self._report(out.manifest, out.state, reason=out.reason, figures=out.figures)
            return
        try:
            manifest = self.verifier.manifest(signed, last_sequence=self.ledger.last_sequence)
        except ManifestRejected as exc:
            self._reject(command_id, str(exc))
            return
        job = self.ledger.job
        if job is not None and job.state in (L.TRIAL, L.ROLLING_BACK):
            reason = (f"refused while {job.manifest.model}:{job.manifest.version} ({job.manifest.variant_id}) is in its trial; "
                      "send it again after the trial ends")
            self._reject(command_id, reason)
            self._report(manifest, L.FAILED, reason=reason, bytes_done=0)
            return
        # From here the manifest is accepted: its sequence is the new floor, whatever happens next.
        self.ledger.last_sequence = manifest.sequence
        self.ledger.remember_command(command_id)
        key = _rollout_key(manifest)
        if manifest.rollout_id and key in self.ledger.rolled_back:
            self._finish_unstarted(command_id, signed, manifest,
                                   f"{manifest.model}:{manifest.version} ({manifest.variant_id}) was rolled back on this device "
                                   f"earlier in rollout {manifest.rollout_id}; not installing it again")
            return
        active = self.active_manifest()
        if active is not None and active.sha256 == manifest.sha256:
            if job is not None:
                self._fail(job, f"superseded by sequence {manifest.sequence} (the active model)")
            self.ledger.last_outcome = Outcome(command_id, signed.SerializeToString(), L.COMMITTED, "already the active model")
            self.ledger.save()
            self._report(manifest, L.COMMITTED, reason="already the active model")
            return
        if job is not None and job.state == L.DOWNLOADING and self._same_blobs(job.manifest, manifest):
            self._adopt_download(job, command_id, signed, manifest)
            return
        if job is not None:
            self._fail(job, f"superseded by sequence {manifest.sequence} ({manifest.model}:{manifest.version} {manifest.variant_id})")
        problem = self._space_problem(manifest)
        if problem:
            self._finish_unstarted(command_id, signed, manifest, problem)
            return
        self._clear_blobs(keep=())
        job = Job(command_id=command_id, signed=signed.SerializeToString(), state=L.DOWNLOADING, slot=self.slots.inactive())
        self._quarter = 0
        if self._enter(job, L.DOWNLOADING, bytes_done=0):
            self._open_downloads(job)
            self._advance()

    def _same_blobs(self, a: manifest_pb2.ModelManifest, b: manifest_pb2.ModelManifest) -> bool:
        return self._blobs(a) == self._blobs(b) and a.chunk_size == b.chunk_size

    def _adopt_download(self, job: Job, command_id: str, signed: manifest_pb2.SignedManifest,
                        manifest: manifest_pb2.ModelManifest) -> None:
        """A newer manifest for the same bytes (a coordinator retry): keep what was downloaded."""
        self._report(job.manifest, L.FAILED, reason=f"superseded by sequence {manifest.sequence} (same blobs: the download goes on)",
                     bytes_done=0)
        adopted = Job(command_id=command_id, signed=signed.SerializeToString(), state=L.DOWNLOADING, slot=job.slot)
        if self._enter(adopted, L.DOWNLOADING, bytes_done=self._bytes_done()):
            self._advance()

    def _finish_unstarted(self, command_id: str, signed: manifest_pb2.SignedManifest, manifest: manifest_pb2.ModelManifest,
                          reason: str) -> None:
        self.ledger.last_outcome = Outcome(command_id, signed.SerializeToString(), L.FAILED, reason)
        self.ledger.save()
        self._report(manifest, L.FAILED, reason=reason, bytes_done=0)

    def _space_problem(self, manifest: manifest_pb2.ModelManifest) -> str | None:
        needed = blob_total(manifest)
        pointer = self.slots.pointer
        inactive = self.slots.inactive()
        kept = self.slots.bytes_used(pointer.active)
        reclaimable = self.slots.bytes_used(inactive) + _dir_bytes(self.blob_dir)
        problem = space_problem(needed=needed, state_dir=self.state_dir, kept_bytes=kept, reclaimable_bytes=reclaimable,
                                budget_bytes=self.storage_budget_bytes)
        if problem:
            return problem
        # It fits, but maybe only once the inactive slot is gone: then it goes now, before the download.
        if space_problem(needed=needed, state_dir=self.state_dir, kept_bytes=kept + reclaimable, reclaimable_bytes=0,
                         budget_bytes=self.storage_budget_bytes):
            log.info("making room: clearing %s (the previous model) before the download", inactive)
            self.slots.clear(inactive)
            self._clear_blobs(keep=())
        return None

    # -- state entry --------------------------------------------------------------------------

    def _enter(self, job: Job, state: str, *, report: bool = True, **kw) -> bool:
        """Persist `state` before acting on it; False when the loop guard failed the install instead."""
        count = job.attempts.get(state, 0) + 1
        job.attempts[state] = count
        job.state = state
        if state in (L.DOWNLOADING, L.VERIFYING, L.STAGED) and count > self.max_state_attempts:
            self._fail(job, f"install entered {state} {count} times without getting further (the agent keeps crashing there?)",
                       {"attempts": float(count)})
            return False
        self.ledger.job = job
        self.ledger.save()
        self._crash.hit(state)
        if report:
            self._report(job.manifest, state, **kw)
        return True

    def _blobs(self, manifest: manifest_pb2.ModelManifest) -> list[tuple[str, int]]:
        blobs = [(manifest.sha256, manifest.size_bytes)]
        if manifest.golden.sha256:
            blobs.append((manifest.golden.sha256, manifest.golden.size_bytes))
        return blobs

    def _open_downloads(self, job: Job) -> None:
        self._close_downloads()
        m = job.manifest
        try:
            for sha, size in self._blobs(m):
                download = BlobDownload(self.blob_dir, sha, size, m.chunk_size)
                self._downloads[sha] = download
                self.fetcher.add(download)
        except TransferError as exc:
            self._fail(job, str(exc))
            return
        resumed = sum(d.resumed for d in self._downloads.values())
        if resumed:
            log.info("resuming the download of %s:%s: %d chunk(s) already on disk", m.model, m.version, resumed)

    def _close_downloads(self, remove: bool = False) -> None:
        for sha, download in self._downloads.items():
            self.fetcher.discard(sha)
            download.remove() if remove else download.close()
        self._downloads = {}

    def _clear_blobs(self, keep: tuple[str, ...]) -> None:
        if not self.blob_dir.is_dir():
            return
        for entry in self.blob_dir.iterdir():
            if entry.is_file() and entry.name.split(".", 1)[0] not in keep:
                entry.unlink(missing_ok=True)

    # -- progress -----------------------------------------------------------------------------

    def _advance(self) -> None:
        """Run the machine until it waits for something (chunks, the trial) or the install ended."""
        while True:
            job = self.ledger.job
            if job is None:
                return
            before = job.state
            if before == L.DOWNLOADING:
                if not self._downloads:
                    self._open_downloads(job)
                    if self.ledger.job is not job:
                        continue
                if all(d.complete for d in self._downloads.values()):
                    for d in self._downloads.values():
                        d.sync()
                    self._enter(job, L.VERIFYING)
                else:
                    self.fetcher.pump()
                    return
            elif before == L.VERIFYING:
                self._verify(job)
            elif before == L.STAGED:
                self._accept_and_activate(job)
            elif before == L.TRIAL:
                if _no_trial(job.manifest.trial):
                    self.commit()
                return
            elif before == L.ROLLING_BACK:
                self._finish_rollback(job)
            if self.ledger.job is job and job.state == before:
                return

    def _verify(self, job: Job) -> None:
        m = job.manifest
        names = file_names(m)
        slot_dir = self.slots.path(job.slot)
        bad: list[str] = []
        incomplete: list[str] = []
        sources: dict[str, Path] = {}
        for sha, size in self._blobs(m):
            download = self._downloads.get(sha)
            part = self.blob_dir / (sha + ".part")
            placed = slot_dir / names[sha]
            if download is not None and not download.complete:
                incomplete.append(sha)  # only after a power cut lost journal records
            elif part.is_file():
                # The download's running SHA-256 is the file's (agent/transfer.py); without one (restarted
                # in VERIFYING) the file is read.
                if part.stat().st_size == size and (download.digest() if download is not None else _file_sha256(part)) == sha:
                    sources[sha] = part
                else:
                    bad.append(sha)
            elif placed.is_file() and _file_sha256(placed) == sha:
                continue  # moved into the slot before a crash
            else:
                bad.append(sha)
        if bad or incomplete:
            self._refetch(job, bad, incomplete)
            return
        if job.slot == self.slots.pointer.active:
            self._fail(job, f"{job.slot} became the active slot during the install")
            return
        self.slots.clear(job.slot, keep=tuple(names.values()))
        for sha, part in sources.items():
            self.fetcher.discard(sha)
            download = self._downloads.pop(sha, None)
            if download is not None:
                download.detach_part()
            else:
                (self.blob_dir / (sha + ".have")).unlink(missing_ok=True)
            self.slots.place(job.slot, part, names[sha], sync=False)
        # No fsync of the blob directory: that the .part names left it need not be durable. After a power
        # cut a stale one is deleted at start-up, or (this install's) hashed and placed again by _verify.
        self._downloads = {}
        self.slots.seal(job.slot, job.signed_manifest)  # fsyncs the slot directory: the moves above are durable
        self._sealed = (job.slot, m.sha256)
        self._enter(job, L.STAGED)

    def _refetch(self, job: Job, bad: list[str], incomplete: tuple[str, ...] | list[str] = ()) -> None:
        """Back to downloading: blobs whose digest is wrong start over, incomplete ones resume."""
        sizes = dict(self._blobs(job.manifest))
        reason = ""
        figures: dict[str, float] = {}
        if bad:
            job.verify_failures += 1
            what = ", ".join(f"{'model' if sha == job.manifest.sha256 else 'golden set'} {sha[:12]}" for sha in bad)
            figures["verify_failures"] = float(job.verify_failures)
            if job.verify_failures >= self.max_verify_failures:
                self._fail(job, f"sha256 mismatch for {what} after {job.verify_failures} downloads", figures)
                return
            reason = f"sha256 mismatch for {what}: discarded, fetching it again"
            log.warning("install %s:%s: %s", job.manifest.model, job.manifest.version, reason)
        for sha in [*bad, *incomplete]:
            download = self._downloads.get(sha)
            if download is None:
                try:
                    download = self._downloads[sha] = BlobDownload(self.blob_dir, sha, sizes[sha], job.manifest.chunk_size)
                except TransferError as exc:
                    self._fail(job, str(exc))
                    return
            if sha in bad:
                download.reset()
            self.fetcher.add(download)
        self._quarter = 0
        self._enter(job, L.DOWNLOADING, reason=reason, figures=figures, bytes_done=self._bytes_done())

    def _accept_and_activate(self, job: Job) -> None:
        m = job.manifest
        just_sealed, self._sealed = self._sealed == (job.slot, m.sha256), None
        content = self.slots.content(job.slot, fresh=not just_sealed)
        intact = (content is not None and content.manifest.sha256 == m.sha256
                  and (just_sealed or (_file_sha256(content.model_path) == m.sha256
                                       and (content.golden_path is None or _file_sha256(content.golden_path) == m.golden.sha256))))
        if not intact:
            self._refetch(job, [sha for sha, _ in self._blobs(m)])
            return
        try:
            backend = self._backend_factory(m)
            result = run_acceptance(content.model_path, content.golden_path, m, backend,
                                    latency_factor=self._latency_factor(), runs=self.acceptance_runs)
        except ModelLoadError as exc:
            self._fail(job, f"the model cannot be loaded on this device: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - whatever went wrong, the old model keeps running
            log.exception("acceptance test of %s crashed", m.variant_id)
            self._fail(job, f"acceptance test could not run: {exc}")
            return
        if not result.ok:
            self._fail(job, result.reason, result.figures)
            return
        job.figures = dict(result.figures)
        self._accepted = (m.sha256, dict(result.figures))
        if not self._enter(job, L.TRIAL, report=False):
            return
        self._activate(job, reason="")

    def _activate(self, job: Job, reason: str) -> None:
        self.slots.activate(job.slot)
        self._crash.hit("activated")
        self._trial_started = self._clock()
        self._trial_inferences = 0
        self._notify_active()
        if self.ledger.job is not job or job.state != L.TRIAL:
            return  # the callback already ended the trial (the live model would not load): that was reported
        self._report(job.manifest, L.TRIAL, reason=reason, figures=job.figures)

    # -- ending an install --------------------------------------------------------------------

    def _fail(self, job: Job, reason: str, figures: Mapping[str, float] | None = None) -> None:
        """End an install that never activated: the old model keeps running."""
        self._close_downloads(remove=True)
        self.ledger.job = None
        self.ledger.last_outcome = Outcome(job.command_id, job.signed, L.FAILED, reason, dict(figures or {}))
        self.ledger.save()
        self._report(job.manifest, L.FAILED, reason=reason, figures=figures, bytes_done=0)

    def commit(self) -> bool:
        """End the trial well: the new model stays. False when no trial is running."""
        job = self.ledger.job
        if job is None or job.state != L.TRIAL:
            return False
        self.ledger.job = None
        self.ledger.last_outcome = Outcome(job.command_id, job.signed, L.COMMITTED, "", job.figures)
        self.ledger.save()
        self._crash.hit("committed")
        self._trial_started = None
        self._report(job.manifest, L.COMMITTED, figures=job.figures)
        return True

    def rollback(self, reason: str, figures: Mapping[str, float] | None = None) -> bool:
        """End the trial badly: back to the previous slot. False when no trial is running."""
        job = self.ledger.job
        if job is None or job.state != L.TRIAL:
            return False
        job.reason, job.figures = reason, dict(figures or {})
        self._enter(job, L.ROLLING_BACK, report=False)
        self._crash.hit("rolling_back")
        self._finish_rollback(job)
        return True

    def record_trial_outcome(self, ok: bool, reason: str = "", figures: Mapping[str, float] | None = None) -> bool:
        return self.commit() if ok else self.rollback(reason or "trial failed", figures)

    def _finish_rollback(self, job: Job) -> None:
        swapped = self.slots.pointer.active == job.slot
        if swapped:
            self.slots.restore_previous()
        m = job.manifest
        if m.rollout_id:
            self.ledger.rolled_back.add(_rollout_key(m))
        self.ledger.job = None
        self.ledger.last_outcome = Outcome(job.command_id, job.signed, L.ROLLED_BACK, job.reason, job.figures)
        self.ledger.save()
        self._trial_started = None
        if swapped:
            self._notify_active()
        self._report(m, L.ROLLED_BACK, reason=job.reason, figures=job.figures)

    def _rollback_order(self, command_id: str, rollback: commands_pb2.Rollback) -> None:
        if self.ledger.seen(command_id):
            return
        try:
            order = self.verifier.rollback(rollback, last_sequence=self.ledger.last_sequence)
        except ManifestRejected as exc:
            self._reject(command_id, str(exc))
            return
        self.ledger.last_sequence = order.sequence
        self.ledger.remember_command(command_id)
        reason = "rollback ordered by the coordinator" + (f": {order.reason}" if order.reason else "")

        def ordered(m: manifest_pb2.ModelManifest) -> bool:
            return not order.rollout_id or m.rollout_id == order.rollout_id

        job = self.ledger.job
        if job is not None and not ordered(job.manifest):
            job = None  # an install of another rollout goes on
        if job is not None and job.state in (L.DOWNLOADING, L.VERIFYING, L.STAGED):
            self._fail(job, f"cancelled: {reason}")
            job = None
        if job is not None:  # in the trial (or already rolling back): undo this install
            job.reason, job.figures, job.rollback_order = reason, {}, True
            if job.state != L.ROLLING_BACK:
                self._enter(job, L.ROLLING_BACK, report=False)
                self._crash.hit("rolling_back")
            self._finish_rollback(job)
            return
        active = self.slots.active()
        in_trial = self.ledger.job is not None and self.ledger.job.state in (L.TRIAL, L.ROLLING_BACK)
        if active is None or not ordered(active.manifest) or in_trial:
            self.ledger.save()
            what = "no model is active" if active is None else f"the active model is from rollout {active.manifest.rollout_id or '(none)'}"
            self._report(None, L.ROLLED_BACK, reason=f"nothing to roll back: {what}", rollout_id=order.rollout_id,
                         sequence=order.sequence)
            return
        undo = Job(command_id=command_id, signed=active.signed.SerializeToString(), state=L.ROLLING_BACK, slot=active.slot,
                   reason=reason, rollback_order=True)
        self._enter(undo, L.ROLLING_BACK, report=False)
        self._crash.hit("rolling_back")
        self._finish_rollback(undo)

    # -- chunks, time, connection -------------------------------------------------------------

    def handle_chunk(self, chunk: transfer_pb2.BlobChunk, *, later: Callable[[Callable[[], None]], None] | None = None) -> None:
        """Store one chunk. later(fn) runs what follows beyond storing it (the end of a download, a failure);
        default: at once. The deployer passes its worker's queue when it stores chunks on the link's thread."""
        outcome = self.fetcher.on_chunk(chunk)
        if outcome.kind == "unknown":
            log.debug("ignored a chunk: %s", outcome.reason)
            return
        if outcome.kind == "dropped":
            log.warning("dropped a chunk of %s: %s (asked again)", chunk.sha256[:12], outcome.reason)
            return
        run = later or _call
        sha = chunk.sha256
        if outcome.kind == "error":
            run(lambda: self._chunk_error(sha, outcome.reason))
            return
        if outcome.kind == "duplicate":
            return
        self._crash.chunk_stored()
        if self.profiler.owns(sha):
            if outcome.download.complete:
                run(lambda: self.profiler.owns(sha) and self.profiler.on_stored())
            return
        job = self.ledger.job
        if job is None or job.state != L.DOWNLOADING:
            return
        self._report_quarters(job)
        if all(d.complete for d in self._downloads.values()):
            run(lambda: self._downloaded(job))

    def _chunk_error(self, sha256: str, reason: str) -> None:
        """The coordinator cannot serve a blob: a profiling candidate is dropped, an install fails."""
        if self.profiler.owns(sha256):
            self.profiler.on_error(reason)
        elif self.ledger.job is not None and sha256 in self._downloads:
            self._fail(self.ledger.job, reason)

    def _downloaded(self, job: Job) -> None:
        """Every blob of the install is in: on to verifying (unless the install changed meanwhile)."""
        if self.ledger.job is job and job.state == L.DOWNLOADING and self._downloads and all(
                d.complete for d in self._downloads.values()):
            self._advance()

    def _bytes_done(self) -> int:
        return sum(d.bytes_done for d in self._downloads.values())

    def _report_quarters(self, job: Job) -> None:
        # Runs per chunk: the cheap tests first. After quarter 3 the next report is VERIFYING.
        if self._quarter >= 3:
            return
        # A fast download is not worth a report per quarter (each is an event for the coordinator to store):
        # the next state follows soon. A slow one still says every quarter that it is alive.
        if self._reported_at is not None and self._clock() - self._reported_at < self.progress_interval_s:
            return
        total = blob_total(job.manifest)
        done = self._bytes_done()
        quarter = 4 * done // total if total else 4
        if 0 < quarter < 4 and quarter > self._quarter:
            self._quarter = quarter
            self._report(job.manifest, L.DOWNLOADING, bytes_done=done)

    def tick(self) -> None:
        """Called often (every ~0.5 s): chunk timeouts and the trial's time limit."""
        self.fetcher.expire()
        job = self.ledger.job
        if self.auto_end_trial and job is not None and job.state == L.TRIAL and self._trial_started is not None:
            seconds = job.manifest.trial.seconds
            if seconds and self._clock() - self._trial_started >= seconds:
                self._end_trial(f"trial time of {seconds} s is over")

    def note_inferences(self, count: int = 1) -> None:
        """The trial policy's inference count: the trial ends after that many inferences."""
        job = self.ledger.job
        if not self.auto_end_trial or job is None or job.state != L.TRIAL:
            return
        self._trial_inferences += count
        limit = job.manifest.trial.inferences
        if limit and self._trial_inferences >= limit:
            self._end_trial(f"trial of {limit} inferences is over")

    def _end_trial(self, why: str) -> None:
        """The policy's window is over: commit, unless the judge says otherwise (or not yet: None,
        asked again at the next tick or inference)."""
        job = self.ledger.job
        verdict: TrialVerdict | None = (True, "", {})
        if self.trial_judge is not None:
            try:
                verdict = self.trial_judge(job.manifest)
            except Exception as exc:  # noqa: BLE001 - a judge that crashes cannot vouch for the model
                log.exception("trial judge failed")
                verdict = (False, f"trial check failed: {exc}", {})
        if verdict is None:
            return
        if verdict[0]:
            log.info("%s: committing", why)
            self.commit()
        else:
            self.rollback(verdict[1], verdict[2])

    def on_connected(self) -> None:
        """After a (re)connect, answers to earlier chunk requests may be lost: ask again."""
        self.fetcher.forget_outstanding()

    # -- start and stop -----------------------------------------------------------------------

    def resume(self) -> None:
        """Finish or continue whatever a crash or a stop left, so the device runs a valid model."""
        prepare_acceptance()  # at start, not in the first install (a one-time cost, cached per process)
        self.profiler.clear_scratch()
        job = self.ledger.job
        if job is None:
            self._clear_blobs(keep=())
            if self.ledger.last_outcome is not None:
                # The report may not have left before the restart; the coordinator ignores repeats.
                out = self.ledger.last_outcome
                self._report(out.manifest, out.state, reason=out.reason, figures=out.figures)
            return
        self._clear_blobs(keep=tuple(sha for sha, _ in self._blobs(job.manifest)))
        log.info("resuming the install of %s:%s in state %s", job.manifest.model, job.manifest.version, job.state)
        if job.state == L.DOWNLOADING:
            if self._enter(job, L.DOWNLOADING, bytes_done=0):
                self._open_downloads(job)
                self._advance()
        elif job.state in (L.VERIFYING, L.STAGED):
            if self._enter(job, job.state):
                self._advance()
        elif job.state == L.TRIAL:
            self._resume_trial(job)
        elif job.state == L.ROLLING_BACK:
            self._finish_rollback(job)

    def _resume_trial(self, job: Job) -> None:
        if not job.clean_stop:
            job.restarts += 1
        job.clean_stop = False
        limit = job.manifest.trial.max_restarts or DEFAULT_MAX_RESTARTS
        if job.restarts >= limit:
            job.reason = f"the agent restarted {job.restarts} times during the trial (crash loop; limit {limit})"
            job.figures = {**job.figures, "restarts": float(job.restarts)}
            self._enter(job, L.ROLLING_BACK, report=False)
            self._finish_rollback(job)
            return
        self.ledger.job = job
        self.ledger.save()
        reason = f"trial resumed after an agent restart ({job.restarts} of {limit} allowed)" if job.restarts else "trial resumed"
        try:
            self._activate(job, reason=reason)
        except SlotError as exc:  # the staged slot was damaged while the agent was down
            job.reason = f"cannot resume the trial: {exc}"
            self._enter(job, L.ROLLING_BACK, report=False)
            self._finish_rollback(job)
            return
        if _no_trial(job.manifest.trial):
            self.commit()

    def close(self) -> None:
        """A clean stop: a trial in progress does not count this as a crash."""
        job = self.ledger.job
        if job is not None and job.state == L.TRIAL:
            job.clean_stop = True
            self.ledger.save()
        for download in self._downloads.values():
            download.close()
        self.profiler.close()


def _call(fn: Callable[[], None]) -> None:
    fn()


def _no_trial(policy: manifest_pb2.TrialPolicy) -> bool:
    return not policy.inferences and not policy.seconds


def _rollout_key(m: manifest_pb2.ModelManifest) -> tuple[str, str, str, str]:
    return (m.rollout_id, m.model, m.version, m.variant_id)


def _file_sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    view = _hash_buffer()
    with open(path, "rb", buffering=0) as f:
        while count := f.readinto(view):
            h.update(view[:count])
    return h.hexdigest()


_local = threading.local()


def _hash_buffer() -> memoryview:
    """A read buffer per thread, reused: a fresh 1 MB bytes per read cost page faults on every block
    (several installers hash at once in one process: the simulator, the bench's driver)."""
    view = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(1 << 18))
    return view


def _dir_bytes(directory: Path) -> int:
    if not directory.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in directory.iterdir() if entry.is_file())
