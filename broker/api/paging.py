"""List's page tokens: where the previous page ended, opaque to callers.

A token holds the `seq` of the last workload a page showed (workloads are listed newest first,
by seq), so the next page starts below it however many workloads arrived meanwhile. It names
no tenant and grants nothing: the caller's own filter and visibility apply to every page.
"""

from __future__ import annotations

import base64
import binascii

from broker.errors import InvalidArgument

_PREFIX = "p1:"


def token_after(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_PREFIX}{seq}".encode()).decode().rstrip("=")


def seq_from_token(token: str) -> int:
    bad = InvalidArgument("page_token: not a token from a previous List (pass next_page_token as given)")
    if len(token) > 64:
        raise bad
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if not text.startswith(_PREFIX) or not text[len(_PREFIX) :].isdigit():
        raise bad
    return int(text[len(_PREFIX) :])
