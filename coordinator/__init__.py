"""The coordinator service (edge-coordinator), its store, the optimizer, and the admin CLI (edgectl)."""
