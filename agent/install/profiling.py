"""On-device profiling of candidate variants: fetched like a model, benchmarked, never activated.

Each candidate of a ProfileRequest is a SignedManifest (signature and device checked; the sequence
rule does not apply because nothing is installed). Its model blob is fetched into a scratch
directory, one candidate at a time, through the same Fetcher as installs (so the same window), then
`agent.runtime.profiling.profile()` benchmarks it in a child process and a ProfileResult is emitted.
On a simulated device, latencies are scaled by the profile's latency factor and marked simulated.
A candidate whose model is already in a slot is benchmarked from there, without a download.
"""
from __future__ import annotations

import logging
import shutil
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from agent.manifest import ManifestRejected, ManifestVerifier
from agent.runtime.errors import ModelLoadError, ProfilingFailed
from agent.slots import SLOTS, SlotStore
from agent.transfer import BlobDownload, Fetcher, TransferError
from edgefleet.v1 import commands_pb2, events_pb2, hardware_pb2, manifest_pb2

log = logging.getLogger(__name__)

ProfileFn = Callable[..., dict[str, Any]]


@dataclass
class _Candidate:
    request_id: str
    manifest: manifest_pb2.ModelManifest
    runs: int
    warmup: int
    fetch_failures: int = 0


class Profiler:
    MAX_FETCH_FAILURES = 2

    def __init__(
        self,
        scratch: Path,
        fetcher: Fetcher,
        verifier: ManifestVerifier,
        emit: Callable[[events_pb2.Event], None],
        *,
        slots: SlotStore,
        hardware: Callable[[], hardware_pb2.HardwareProfile | None],
        submit: Callable[[Callable[[], None]], None],
        run_profile: ProfileFn | None = None,
    ) -> None:
        self.scratch = Path(scratch)
        self._fetcher = fetcher
        self._verifier = verifier
        self._emit = emit
        self._slots = slots
        self._hardware = hardware
        self._submit = submit
        self._run_profile = run_profile
        self._pending: deque[_Candidate] = deque()
        self._current: tuple[_Candidate, BlobDownload] | None = None
        self._seen: set[str] = set()

    def clear_scratch(self) -> None:
        """Candidates are not persisted: after a restart the coordinator asks again or times out."""
        shutil.rmtree(self.scratch, ignore_errors=True)

    def owns(self, sha256: str) -> bool:
        return self._current is not None and self._current[1].sha256 == sha256

    @property
    def busy(self) -> bool:
        return self._current is not None or bool(self._pending)

    # -- requests -----------------------------------------------------------------------------

    def start(self, command_id: str, request: commands_pb2.ProfileRequest) -> None:
        key = request.request_id or command_id
        if key in self._seen:
            return  # a QoS 1 redelivery
        self._seen.add(key)
        for signed in request.candidates:
            try:
                manifest = self._verifier.manifest(signed, last_sequence=None)
            except ManifestRejected as exc:
                self._result(request.request_id, _variant_hint(signed), error=f"candidate refused: {exc}")
                continue
            candidate = _Candidate(request.request_id, manifest, request.runs or 50, request.warmup or 5)
            installed = self._installed_copy(manifest.sha256)
            if installed is not None:
                self._submit(lambda c=candidate, p=installed: self._profile(c, p, delete=False))
            else:
                self._pending.append(candidate)
        self._next()

    def _installed_copy(self, sha256: str) -> Path | None:
        for slot in SLOTS:
            content = self._slots.content(slot)
            if content is not None and content.manifest.sha256 == sha256:
                return content.model_path
        return None

    def _next(self) -> None:
        while self._current is None and self._pending:
            candidate = self._pending.popleft()
            m = candidate.manifest
            if self._fetcher.get(m.sha256) is not None:
                self._result(candidate.request_id, m.variant_id, error="this blob is being installed right now; profile it after the install")
                continue
            try:
                download = BlobDownload(self.scratch, m.sha256, m.size_bytes, m.chunk_size)
            except TransferError as exc:
                self._result(candidate.request_id, m.variant_id, error=str(exc))
                continue
            self._current = (candidate, download)
            self._fetcher.add(download)
            self._fetcher.pump()

    # -- chunks -------------------------------------------------------------------------------

    def on_stored(self) -> None:
        """A chunk of the current candidate was stored."""
        candidate, download = self._current
        if not download.complete:
            return
        digest = download.digest()
        if digest != candidate.manifest.sha256:
            candidate.fetch_failures += 1
            log.warning("profiling candidate %s: sha256 mismatch (got %s); fetching again", candidate.manifest.variant_id, digest[:12])
            if candidate.fetch_failures < self.MAX_FETCH_FAILURES:
                download.reset()
                self._fetcher.pump()
                return
            self._drop_current(f"sha256 mismatch after {candidate.fetch_failures} downloads")
            return
        self._fetcher.discard(download.sha256)
        path = download.detach_part()
        self._current = None
        self._submit(lambda: self._profile(candidate, path, delete=True))
        self._next()

    def on_error(self, reason: str) -> None:
        self._drop_current(reason)

    def _drop_current(self, reason: str) -> None:
        candidate, download = self._current
        self._fetcher.discard(download.sha256)
        download.remove()
        self._current = None
        self._result(candidate.request_id, candidate.manifest.variant_id, error=reason)
        self._next()

    def close(self) -> None:
        if self._current is not None:
            self._current[1].close()

    # -- benchmarking (may run on another thread) ----------------------------------------------

    def _profile(self, candidate: _Candidate, path: Path, *, delete: bool) -> None:
        m = candidate.manifest
        hw = self._hardware()
        accelerators = [a.kind for a in hw.accelerators] if hw is not None else []
        factor = hw.latency_factor if hw is not None and hw.simulated and hw.latency_factor > 0 else 1.0
        run = self._run_profile
        if run is None:
            from agent.runtime.profiling import profile as run
        try:
            figures = run(path, accelerators=accelerators, requires_delegate=m.requires_delegate or None,
                          runs=candidate.runs, warmup=candidate.warmup)
        except (ModelLoadError, ProfilingFailed) as exc:
            self._result(candidate.request_id, m.variant_id, error=str(exc), simulated=factor != 1.0)
            return
        except Exception as exc:  # noqa: BLE001 - a result must come back whatever happened
            log.exception("profiling %s failed", m.variant_id)
            self._result(candidate.request_id, m.variant_id, error=f"profiling failed: {exc}", simulated=factor != 1.0)
            return
        finally:
            if delete:
                path.unlink(missing_ok=True)
        self._result(candidate.request_id, m.variant_id, load_ms=figures["load_ms"] * factor, p50_ms=figures["p50_ms"] * factor,
                     p95_ms=figures["p95_ms"] * factor, peak_rss_bytes=int(figures["peak_rss_bytes"]), simulated=factor != 1.0)

    def _result(self, request_id: str, variant_id: str, **fields: Any) -> None:
        self._emit(events_pb2.Event(profile_result=events_pb2.ProfileResult(request_id=request_id, variant_id=variant_id, **fields)))


def _variant_hint(signed: manifest_pb2.SignedManifest) -> str:
    """The variant id of a refused candidate, read without trusting it, only to label the error."""
    try:
        return manifest_pb2.ModelManifest.FromString(signed.manifest).variant_id
    except Exception:  # noqa: BLE001
        return ""
