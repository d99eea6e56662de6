"""Logging: one ``configure_logging`` for the entry points, and a secret-redacting processor.

Library code only ever asks structlog for a logger and binds keys to it; how lines are
rendered and where they go is decided once, by the program's entry point, with
``configure_logging()``: JSON lines in production, a readable console in a terminal.
"""

# Design notes
# ------------
# * Entry points only. A library that configures logging fights the application that
#   embeds it; tradewind's runtime, actors and stores never call `configure_logging`.
# * JSON lines by default when the stream is not a terminal: one object per line, an ISO
#   8601 UTC timestamp, the level, the event and every bound key -- what journald, a log
#   shipper or `jq` wants. The console renderer is for people at a terminal.
# * Logs go to stderr unless told otherwise, so stdout stays free for a command's own
#   output (`tradewind config` printing the effective configuration).
# * Redaction runs after tracebacks are rendered to data and before the renderer, so
#   in JSON it sees every string that will be written, exception messages included
#   (the console renderer formats tracebacks itself, for a person at a terminal). It
#   recognises secrets three ways: a `Secret` value; a key that names a secret
#   (password, token, api_key, ...: matched on whole words of the key, so
#   `tokens_per_second` is left alone); and a password embedded in a string -- in a
#   URL's user-info (`postgresql://user:pw@host`) or a libpq keyword (`password=pw`).
#   It copies the containers it changes: the caller's dicts are never modified.
# * Records from the standard library's `logging` (asyncpg, trio-asyncio, warnings) are
#   routed through the same processors, so they are rendered and redacted the same way.

from __future__ import annotations

import decimal
import enum
import logging
import re
import sys
from pathlib import PurePath
from typing import TYPE_CHECKING, Literal, TextIO

import structlog
from tradewind.runtime._config import MASK, Secret, mask_passwords

if TYPE_CHECKING:
    from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["configure_logging", "redact_secrets"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

# A key names a secret when one of its words (split on _ - . or space) is one of these.
_SECRET_KEY = re.compile(
    r"(?:^|[_\-. ])"
    r"(?:password|passwd|pwd|passphrase|secret|token|api[_\-]?key|private[_\-]?key"
    r"|access[_\-]?key|secret[_\-]?key|credentials?|authorization|cookie)"
    r"(?:$|[_\-. ])",
    re.IGNORECASE,
)


def _redact(value: object) -> object:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, str):
        return mask_passwords(value)
    if isinstance(value, dict):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item) for item in value)
    return value


def _redact_item(key: object, value: object) -> object:
    if value is not None and isinstance(key, str) and _SECRET_KEY.search(key):
        return MASK
    return _redact(value)


def redact_secrets(_logger: WrappedLogger, _method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace every secret in the event with ``***``.

    A ``Secret`` value, the value of any key that names a secret (``password``,
    ``token``, ``secret``, ``api_key``, ``client_secret``, ``auth_token`` ...), and the
    password inside a URL (``postgresql://user:***@host/db``) or a ``password=`` DSN
    keyword are masked, at any depth of nested dicts, lists and tuples. Containers
    that are changed are copies; the caller's objects are left as they were.
    """
    for key, value in event_dict.items():
        event_dict[key] = _redact_item(key, value)
    return event_dict


def _json_default(value: object) -> object:
    """Render values json cannot: exact decimals and paths as text, enums by value."""
    if isinstance(value, decimal.Decimal | PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return value.value
    return repr(value)


def configure_logging(
    *,
    format: Literal["json", "console", "auto"] = "auto",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog (and the standard library's ``logging``) for the whole process.

    Called once, by an entry point (the ``tradewind`` command, a user's ``main``) --
    never by library code. Every event gets its level, an ISO 8601 UTC ``timestamp``
    and the keys bound to the logger or to structlog's context variables; secrets are
    redacted (see ``redact_secrets``). Records sent through ``logging`` by other
    libraries are rendered the same way.

    Args:
        format: ``"json"`` for one JSON object per line; ``"console"`` for aligned,
            readable lines (coloured when the stream is a terminal); ``"auto"`` picks
            console when the stream is a terminal, JSON otherwise.
        level: The least severe level written: debug, info, warning, error or critical
            (any case).
        stream: Where lines are written; None means ``sys.stderr``.

    Raises:
        ValueError: ``level`` or ``format`` is not one of the names above.
    """
    level_number = _LEVELS.get(level.lower())
    if level_number is None:
        msg = f"log level must be one of {', '.join(_LEVELS)}, got {level!r}"
        raise ValueError(msg)
    if format not in ("json", "console", "auto"):
        msg = f"log format must be json, console or auto, got {format!r}"
        raise ValueError(msg)
    out = sys.stderr if stream is None else stream
    is_tty = out.isatty()
    rendering = ("console" if is_tty else "json") if format == "auto" else format

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if rendering == "json":
        shared += [structlog.processors.dict_tracebacks]
        renderer = structlog.processors.JSONRenderer(default=_json_default)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=is_tty)
    shared.append(redact_secrets)

    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level_number),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib_logging(shared, renderer, level_number, out)


def _route_stdlib_logging(
    shared: list[Processor], renderer: Processor, level: int, out: TextIO
) -> None:
    """Send ``logging`` records through the same processors to the same stream."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = _Handler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


class _Handler(logging.StreamHandler[TextIO]):
    """The root handler ``configure_logging`` installed (and replaces when called again)."""
