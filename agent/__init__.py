"""The edge-agent: the device daemon. Never imports TensorFlow or coordinator code."""
