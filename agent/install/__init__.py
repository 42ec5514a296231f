"""The agent's install path: verified, resumable transfer and A/B install with a persisted state machine.

    agent/manifest.py           Ed25519 manifest and rollback-order verification, sequence rule
    agent/transfer.py           chunked, windowed, resumable blob download
    agent/slots.py              A/B slots and the atomic pointer
    agent/install/ledger.py     persisted state: last sequence, install in progress, outcomes
    agent/install/machine.py    the state machine (Installer)
    agent/install/acceptance.py load + golden set + latency check before activation
    agent/install/profiling.py  benchmark candidate variants without activating them
    agent/deployer.py           the facade the daemon wires in (threads, locking)

On disk, under the agent's state directory:

    models/pointer.json, models/slot-a/, models/slot-b/
    install/ledger.0|.1 (two records, written alternately), install/blobs/<sha256>.part|.have, install/profiling/
"""
