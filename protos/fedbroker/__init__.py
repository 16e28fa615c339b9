"""fedbroker wire API (generated from protos/fedbroker)."""
