"""The manifest spec a rollout sends for one of its variants: the variant's own spec (candidates.py) plus
the rollout's golden set, acceptance thresholds and trial policy. Built from the model store and the
rollout row, both immutable once the rollout exists, so a restarted coordinator builds the same."""
from __future__ import annotations

import threading
from dataclasses import replace

from coordinator.models.artifacts import ArtifactStore
from coordinator.models.repository import ModelRepository
from coordinator.rollouts.candidates import version_candidates
from coordinator.rollouts.golden import GoldenSet
from coordinator.rollouts.spec import RolloutParams
from coordinator.store.rollout_tables import RolloutRow
from coordinator.transfer.manifests import ManifestSpec


class DeploySpecs:
    def __init__(self, models: ModelRepository, artifacts: ArtifactStore):
        self.models = models
        self.artifacts = artifacts
        self._cache: dict[tuple[str, str], ManifestSpec] = {}
        self._lock = threading.Lock()

    def spec(self, rollout: RolloutRow, variant_id: str) -> ManifestSpec:
        key = (rollout.id, variant_id)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            return cached
        params = RolloutParams.from_json(rollout.params)
        version = self.models.get_version(rollout.model, rollout.version)
        found = next((c for c in version_candidates(version, self.artifacts, chunk_size=params.chunk_size) if c.variant_id == variant_id), None)
        if found is None:
            raise LookupError(f"{rollout.model}:{rollout.version} has no variant {variant_id!r} any more")
        golden = (rollout.golden or {}).get(variant_id)
        spec = replace(
            found.spec,
            golden=GoldenSet.from_json(golden).to_proto() if golden else None,
            acceptance=params.acceptance(),
            trial=params.trial(),
        )
        with self._lock:
            self._cache[key] = spec
        return spec

    def forget(self, rollout_id: str) -> None:
        with self._lock:
            for key in [k for k in self._cache if k[0] == rollout_id]:
                del self._cache[key]
