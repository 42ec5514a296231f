"""edgectl, the admin CLI (a thin gRPC client; never imports TensorFlow or the coordinator service)."""
