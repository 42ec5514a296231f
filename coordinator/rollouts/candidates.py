"""A model version's variants as selection candidates, each with the manifest spec that would ship it.

Every built variant is a candidate. A variant the Edge TPU compiler compiled also gives a second
candidate, `<id>-edgetpu`: the compiled artifact, which needs the edgetpu delegate and has no host
latency (it cannot run on the host). The uncompiled int8 artifact stays a candidate of its own with
the status `compatible`, so a board whose runtime has no Edge TPU delegate can still take it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from coordinator.models import convert
from coordinator.models.artifacts import ArtifactStore
from coordinator.models.records import VariantRecord, VersionRecord
from coordinator.profiling.requests import ProfileVariant
from coordinator.selection import EDGETPU, Candidate, candidate_from_variant
from coordinator.transfer.manifests import DEFAULT_CHUNK_SIZE, TASKS, ManifestSpec

EDGETPU_SUFFIX = "-edgetpu"


@dataclass(frozen=True)
class RolloutCandidate:
    candidate: Candidate
    spec: ManifestSpec  # without golden set, acceptance or trial: a rollout adds its own
    input_features: tuple[int, ...] | None = None  # RFE: the golden set keeps only these features

    @property
    def variant_id(self) -> str:
        return self.candidate.variant_id


def _task(version: VersionRecord) -> str:
    return version.task if version.task in TASKS else "classification"


def _metric_name(version: VersionRecord) -> str:
    return version.metric_name or ("mae" if version.task == "regression" else "accuracy")


def variant_candidates(version: VersionRecord, v: VariantRecord, artifacts: ArtifactStore, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[RolloutCandidate]:
    """The candidate(s) of one built variant: itself, and its Edge TPU compiled build when there is one."""
    if not v.ok:
        return []
    msg = convert.variant(v)
    compiled = v.edgetpu.compiled_sha256 if v.edgetpu.status == "compiled" else None
    if compiled:
        # The uncompiled artifact is the Edge TPU-compatible int8 model; "compiled" belongs to the other build.
        msg.edgetpu.status = "compatible"
    cand = candidate_from_variant(msg, _metric_name(version))
    features = tuple(v.input_features) if v.input_features else None
    spec = ManifestSpec(
        model=version.name,
        version=version.version,
        variant_id=v.id,
        technique=v.technique,
        sha256=v.sha256 or "",
        size_bytes=int(v.size_bytes or 0),
        task=_task(version),
        inputs=tuple(msg.inputs),
        outputs=tuple(msg.outputs),
        input_features=features or (),
        chunk_size=chunk_size,
    )
    out = [RolloutCandidate(cand, spec, features)]
    if compiled and artifacts.has(compiled):
        size = artifacts.path(compiled).stat().st_size
        tpu_id = v.id + EDGETPU_SUFFIX
        tpu = replace(
            cand, variant_id=tpu_id, sha256=compiled, size_bytes=size, edgetpu="compiled", requires_delegate=EDGETPU,
            host_p50_ms=None, host_p95_ms=None,
        )
        out.append(RolloutCandidate(tpu, replace(spec, variant_id=tpu_id, sha256=compiled, size_bytes=size, requires_delegate=EDGETPU), features))
    return out


def version_candidates(version: VersionRecord, artifacts: ArtifactStore, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> list[RolloutCandidate]:
    """Every candidate of a version, in build order; variants that failed or were skipped are left out."""
    out: list[RolloutCandidate] = []
    for v in version.variants:
        out += variant_candidates(version, v, artifacts, chunk_size=chunk_size)
    return out


def profile_variants(version: VersionRecord, artifacts: ArtifactStore) -> list[ProfileVariant]:
    """What `edgectl model profile` sends: every candidate, as coordinator.profiling wants it."""
    return [ProfileVariant(c.candidate, c.spec) for c in version_candidates(version, artifacts)]
