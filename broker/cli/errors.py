"""Exit codes and error output: one line a person reads, or with `-o json` one JSON object on stderr.

Exit codes (README):
  0    success (for `watch`: the workload SUCCEEDED)
  1    the broker refused the call, or the watched workload ended FAILED or CANCELLED
  2    bad input: a file, a flag or a value (before anything is sent)
  3    the broker cannot be reached (safe to retry)
  124  `watch --timeout` expired, like timeout(1); the workload goes on
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import click
import grpc

from broker.client import ClientError
from broker.tls import handshake_hint
from broker.validation import InvalidInput

OK, REFUSED, BAD_INPUT, UNREACHABLE, TIMED_OUT = 0, 1, 2, 3, 124


@dataclass(frozen=True)
class Failure:
    code: str  # a stable name: the gRPC status, or INVALID_INPUT, USAGE, TIMEOUT
    message: str
    exit: int
    field: str | None = None
    hint: str | None = None


class CliFailure(click.ClickException):
    """A failure a command raises; `main` prints it and exits with its code."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def from_client_error(error: ClientError, endpoint: str = "", tls_on: bool = False) -> Failure:
    code = error.code.name if isinstance(error.code, grpc.StatusCode) else str(error.code)
    message = error.message or code
    if error.code == grpc.StatusCode.UNAVAILABLE:
        where = f" at {endpoint}" if endpoint else ""
        refused_tls = handshake_hint(message, tls_on)
        if refused_tls:
            return Failure(code, f"cannot reach the broker{where}: {refused_tls}", UNREACHABLE)
        return Failure(
            code,
            f"cannot reach the broker{where}: {_plain(message)}",
            UNREACHABLE,
            hint="is it running? set --endpoint, FEDBROKER_ENDPOINT or a context (fedbroker context use)",
        )
    if error.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Failure("TIMEOUT", message, TIMED_OUT)
    if error.code == grpc.StatusCode.UNAUTHENTICATED:
        return Failure(code, message, REFUSED, hint="check FEDBROKER_TOKEN or your context's token_file")
    head, sep, _ = message.partition(": ")
    field = head if sep and " " not in head and error.code == grpc.StatusCode.INVALID_ARGUMENT else None
    return Failure(code, message, REFUSED, field)


def from_invalid_input(error: InvalidInput) -> Failure:
    return Failure("INVALID_INPUT", str(error), BAD_INPUT, error.field)


def _plain(message: str) -> str:
    """gRPC's connection failures in words ('failed to connect to all addresses; last error: ...')."""
    lowered = message.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if "dns resolution failed" in lowered or "name or service not known" in lowered:
        return "no such host"
    if "deadline" in lowered or "timeout" in lowered:
        return "no answer in time"
    return message


def report(failure: Failure, as_json: bool) -> None:
    if as_json:
        body = {"code": failure.code, "message": failure.message, "field": failure.field}
        if failure.hint:
            body["hint"] = failure.hint
        click.echo(json.dumps(body), err=True)
        return
    code = "" if failure.code in ("INVALID_INPUT", "USAGE", "TIMEOUT") else f"{failure.code}: "
    click.echo(f"error: {code}{failure.message}", err=True)
    if failure.hint:
        click.echo(f"hint: {failure.hint}", err=True)


def wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON output (read before click parses it, so that
    usage errors are JSON too)."""
    for i, arg in enumerate(argv):
        if arg in ("-o", "--output") and i + 1 < len(argv) and argv[i + 1] == "json":
            return True
        if arg in ("-ojson", "--output=json"):
            return True
    return False


def fail(
    message: str, *, exit: int = BAD_INPUT, code: str = "INVALID_INPUT", field: str | None = None
) -> None:
    raise CliFailure(Failure(code, message, exit, field))


def exit_with(failure: Failure, as_json: bool) -> None:
    report(failure, as_json)
    sys.exit(failure.exit)
