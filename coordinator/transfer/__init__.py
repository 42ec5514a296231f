"""Getting a model onto a device: signed manifests and commands, per-device sequences, blob grants and chunks.

    manifests.py   ManifestSpec -> SignedManifest (Ed25519), signed rollback orders
    commands.py    Deploy / Rollback / Profile commands wrapped in envelopes for ef/v1/dev/{id}/cmd
    sequences.py   the per-device monotonically increasing sequence counter
    grants.py      which blobs a device may fetch (written when a manifest naming them is issued)
    blobs.py       the blob server: BlobRequest in, BlobChunk out, flow-controlled
"""
