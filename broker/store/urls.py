"""`--db`: a database URL or a path to a SQLite file, and URLs shown without their password."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from broker.validation import InvalidInput


def database_url(value: str) -> str:
    """A URL as given (postgresql://..., sqlite:///...); anything else is a SQLite file's path."""
    if "://" not in value:
        path = Path(value).expanduser().resolve()
        if path.is_dir():
            raise InvalidInput("--db", [f"{path} is a folder; give a file, e.g. {path / 'broker.db'}"])
        return f"sqlite:///{path}"
    try:
        make_url(value)
    except ArgumentError:
        raise InvalidInput(
            "--db", [f"{redact(value)} is not a database URL (postgresql://..., sqlite:///...)"]
        ) from None
    return value


def redact(url: str) -> str:
    """The URL with its password replaced by ***, whatever its shape (never echo a secret)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def scrub(text: str, url: str) -> str:
    """`text` (an error message) with the URL's password, wherever it appears, replaced by ***."""
    try:
        password = make_url(url).password
    except ArgumentError:
        _, _, rest = url.partition("://")
        credentials = rest.rpartition("@")[0]
        password = credentials.split(":", 1)[1] if ":" in credentials else None
    return text.replace(str(password), "***") if password else text
