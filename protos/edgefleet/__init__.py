"""The edgefleet wire: protobuf messages (v1/), MQTT topic names and envelopes, shared by agent and coordinator."""
