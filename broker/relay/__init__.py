"""Front processes for the broker (`fedbroker serve --fronts N`).

The broker's engine runs on one event loop, and at saturation that loop spends about 40% of
its time in gRPC's per-call work, not in scheduling. Fronts take that work into processes of
their own: each accepts clients and agents on the broker's public address (TLS ends there),
passes unary calls to the engine process in batches over one stream each (relay.proto), and
passes streaming calls (Watch, Logs, the agents' Connect) through as they are. The engine
process listens only on a Unix socket in a private directory, and answers a relayed call
with the same handler, the same checks and the same status as a direct one.
"""
