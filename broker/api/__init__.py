"""The gRPC boundary: authenticate, convert, call the engine, map errors to status codes."""
