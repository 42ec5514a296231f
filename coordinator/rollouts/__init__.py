"""Fleet rollouts: which variant each device gets, in which wave, and a persisted engine that sends them.

    states.py       the states of a rollout and of its devices; how agent install states map onto them
    spec.py         RolloutParams: a RolloutSpec with the config's defaults applied, checked
    candidates.py   a model version's variants as selection candidates with their manifest specs
    golden.py       the golden set shipped with a manifest (validation samples of the uploaded data)
    waves.py        canary first, then the rest in waves
    planner.py      selector -> devices -> per-device choice -> waves (dry run and create)
    repository.py   the rollout rows in the store: every state change is a compare-and-set
    deploys.py      the manifest spec a rollout sends for a variant (golden set, acceptance, trial added)
    events.py       install events from agents -> device rows and model history (idempotent)
    observe.py      telemetry thresholds over an observation window
    engine.py       the state machine driven by a background tick (injectable clock)
    convert.py      rows -> admin.proto messages
    service.py      RolloutService: the above wired on a ServiceContext (used by api/rollouts.py)

The policy is described in docs/rollouts.md (and the variant choice in docs/selection.md).
"""
