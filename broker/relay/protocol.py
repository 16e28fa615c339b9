"""What both sides of the relay agree on: the metadata's and the status's wire form, and the
trusted keys a front adds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc
from fedbroker.v1 import relay_service_pb2 as pb

# Set by a front, never taken from a caller: a front drops every incoming key with this prefix.
TRUSTED_PREFIX = "fedbroker-relay-"
# The caller's verified certificate names (mutual TLS), one value each: the engine process
# sees the front's Unix socket, not the caller's TLS session.
PEER_SAN_KEY = TRUSTED_PREFIX + "peer-san"
# Each front's relay stream and pass-through calls go to the engine process on this socket.
SOCKET_NAME = "engine.sock"
# A relay message carries up to RELAY_BATCH_BYTES of calls, and one call alone may be up to the
# public limit (4 MiB) and its envelope: both ends of the relay allow far more than either.
RELAY_BATCH_BYTES = 16 * 1024 * 1024
RELAY_MESSAGE_BYTES = 64 * 1024 * 1024
RELAY_OPTIONS = (
    ("grpc.max_receive_message_length", RELAY_MESSAGE_BYTES),
    ("grpc.max_send_message_length", RELAY_MESSAGE_BYTES),
)

STATUS_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}

Metadata = Sequence[tuple[str, str | bytes]]


def to_wire(metadata: Iterable[tuple[str, str | bytes]]) -> list[pb.Metadatum]:
    return [
        pb.Metadatum(key=key, value=value if isinstance(value, bytes) else value.encode())
        for key, value in metadata
    ]


def from_wire(metadata: Iterable[pb.Metadatum]) -> tuple[tuple[str, str | bytes], ...]:
    """gRPC's own convention: a -bin key's value is bytes, any other key's is text."""
    return tuple(
        (m.key, m.value if m.key.endswith("-bin") else m.value.decode(errors="replace")) for m in metadata
    )


def relayed_peer_names(metadata: Metadata | None) -> frozenset[str]:
    """The caller's certificate names as a front passed them along (PEER_SAN_KEY)."""
    return frozenset(str(value) for key, value in metadata or () if key == PEER_SAN_KEY)


def status_reply(call_id: int, code: grpc.StatusCode, details: str) -> pb.RelayReply:
    """A call that ended without a response: its status and words."""
    return pb.RelayReply(id=call_id, code=code.value[0], details=details)
