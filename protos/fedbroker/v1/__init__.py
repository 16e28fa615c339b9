"""fedbroker.v1: generated protobuf and gRPC modules; do not edit, run protos/generate.py."""
