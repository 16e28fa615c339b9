"""A gRPC health check for Kubernetes exec probes: `python -m broker.probe [options] HOST:PORT`.

Kubernetes' own gRPC probe speaks plaintext only, so a broker serving TLS (or mutual TLS) is
probed with this instead (the Helm chart switches to it when TLS is on). Exit 0 when the health
service says SERVING for `--service`, 1 for any other answer, 2 when it cannot be asked.

It imports only grpc and the health stubs, not the broker, because a probe starts a fresh
interpreter every few seconds and its start-up time is CPU the broker's pod pays for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m broker.probe", description=__doc__.splitlines()[0])
    parser.add_argument("address", help="HOST:PORT of the broker's gRPC endpoint")
    parser.add_argument("--service", default="", help='the health service name ("" = the server)')
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for the answer")
    add_tls_options(parser)
    return parser


def add_tls_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca-file", help="TLS: verify the broker against this CA (PEM)")
    parser.add_argument("--cert-file", help="mutual TLS: the probe's client certificate (PEM)")
    parser.add_argument("--key-file", help="mutual TLS: its private key (PEM)")
    parser.add_argument("--server-name", help="TLS: the name the broker's certificate must carry")


def health_channel(args: argparse.Namespace) -> grpc.Channel:
    """A channel to `args.address`: plaintext, or TLS when `args.ca_file` is given."""
    if not args.ca_file:
        return grpc.insecure_channel(args.address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=Path(args.ca_file).read_bytes(),
        private_key=Path(args.key_file).read_bytes() if args.key_file else None,
        certificate_chain=Path(args.cert_file).read_bytes() if args.cert_file else None,
    )
    # The probe dials the pod's own address; the certificate names the Service.
    options = [("grpc.ssl_target_name_override", args.server_name)] if args.server_name else []
    return grpc.secure_channel(args.address, credentials, options=options)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        channel = health_channel(args)
    except OSError as error:
        print(f"probe: {error}", file=sys.stderr)
        return 2
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout)
        except grpc.RpcError as error:
            print(f"probe: {error.code().name}: {error.details()}", file=sys.stderr)  # type: ignore[attr-defined]
            return 2
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    if response.status != SERVING:
        print(f"probe: {args.service or '(server)'} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
