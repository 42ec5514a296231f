"""The trial-only accuracy floor travels from the rollout spec to the agents' TrialPolicy, and nowhere else."""
from __future__ import annotations

import pytest

from coordinator.config import RolloutsConfig
from coordinator.rollouts.spec import BadRolloutSpec, params_from_spec
from edgefleet.v1 import admin_pb2


def test_min_online_metric_reaches_the_trial_policy_but_not_selection():
    params = params_from_spec(admin_pb2.RolloutSpec(ref="m:1", min_online_metric=0.8), RolloutsConfig())
    assert params.trial().min_online_metric == pytest.approx(0.8)
    assert params.constraints().min_metric is None  # not a selection filter
    assert params.acceptance().min_metric == 0.0  # nor an acceptance test before activation
    assert params.to_proto("m:1", "").min_online_metric == pytest.approx(0.8)


def test_negative_min_online_metric_is_refused():
    with pytest.raises(BadRolloutSpec, match="min_online_metric"):
        params_from_spec(admin_pb2.RolloutSpec(ref="m:1", min_online_metric=-0.1), RolloutsConfig())
