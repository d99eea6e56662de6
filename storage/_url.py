"""Store URLs: parsing and password masking. Pure: no I/O.

Design notes
------------
A store is named by one URL, as in most database tooling, so a single configuration
string or ``--url`` option selects the backend:

- ``postgresql://user:pass@host:port/db?search_path=x`` (also ``postgres://``): handed to
  asyncpg unchanged; asyncpg passes unknown query parameters on as server settings, which
  is how tests give each store its own schema.
- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's form)
  and ``sqlite://:memory:`` for a throw-away database. One query parameter is known,
  ``synchronous=full`` (the default) or ``synchronous=normal``: SQLite's ``PRAGMA
  synchronous`` in WAL mode. ``full`` syncs the log on every commit, so a commit survives
  a power loss; ``normal`` syncs it only at checkpoints, so a commit survives a crash of
  the process (or a SIGKILL) but the last ones may roll back after a power loss or an
  OS crash -- never half-written. ``off`` is refused (an OS crash could corrupt the
  file), and so is any other parameter: a misspelt one must not be ignored.

The password must never reach a message, a log line or a repr: `StoreUrl` keeps the raw
URL out of its repr and offers `masked` for every message. Parsing errors mask too: a
malformed URL may still contain a password.
"""

from __future__ import annotations

import re
import urllib.parse

import attrs
from tradewind.storage._errors import InvalidStoreUrl

POSTGRESQL = "postgresql"
SQLITE = "sqlite"
MEMORY = ":memory:"

_POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
# userinfo = everything between "//" and the last "@": a password may hold "/", "?" or
# "#" unescaped (then the URL is malformed, and its error message must still mask it)
_USERINFO = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>.*)@")
# a password given as a query parameter (libpq and asyncpg take ``?password=...``)
_QUERY_PASSWORD = re.compile(r"(?i)(?P<key>[?&]password=)[^&#]*")


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``: the userinfo's and a
    ``password`` query parameter's.

    Works on malformed URLs too (it never raises), so error messages can always use it.
    """
    url = _QUERY_PASSWORD.sub(r"\g<key>***", url)
    match = _USERINFO.match(url)
    if match is None:
        return url
    user, sep, _password = match.group("userinfo").partition(":")
    masked_userinfo = f"{user}:***" if sep else user
    return f"{match.group('head')}{masked_userinfo}@{url[match.end() :]}"


@attrs.frozen
class StoreUrl:
    """A parsed store URL.

    ``backend`` is ``"postgresql"`` or ``"sqlite"``; ``masked`` is the URL with its
    password replaced by ``***`` (use it in every message); ``path`` is the SQLite file
    path or ``":memory:"``; ``synchronous`` is SQLite's sync level, ``"FULL"`` or
    ``"NORMAL"``. The raw URL (``dsn``) is kept out of the repr.
    """

    backend: str
    masked: str
    path: str = ""
    synchronous: str = "FULL"
    dsn: str = attrs.field(default="", repr=False)
    password: str = attrs.field(default="", repr=False)

    def scrub(self, text: str) -> str:
        """``text`` with the URL's password replaced by ``***`` (for foreign messages)."""
        return text.replace(self.password, "***") if self.password else text

    @property
    def is_memory(self) -> bool:
        """True for ``sqlite://:memory:``: a database that lives only as long as the store."""
        return self.backend == SQLITE and self.path == MEMORY


def parse_store_url(url: str) -> StoreUrl:
    """Parse and check a store URL.

    Args:
        url: ``postgresql://...``, ``sqlite:///path`` or ``sqlite://:memory:``.

    Returns:
        The parsed `StoreUrl`.

    Raises:
        InvalidStoreUrl: the URL is malformed or its scheme is unknown; the message shows
            the URL with its password masked.
    """
    masked = mask_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise InvalidStoreUrl(
            f"store URL {masked!r} has no scheme; expected postgresql://... or sqlite:///path"
        )
    scheme = scheme.lower()
    if scheme in _POSTGRES_SCHEMES:
        return _parse_postgresql(url, masked)
    if scheme == SQLITE:
        return _parse_sqlite(rest, masked)
    raise InvalidStoreUrl(
        f"store URL {masked!r} has unknown scheme {scheme!r}; expected postgresql or sqlite"
    )


def _parse_postgresql(url: str, masked: str) -> StoreUrl:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise InvalidStoreUrl(f"store URL {masked!r} is malformed: {exc}") from None
    if parts.fragment:
        raise InvalidStoreUrl(f"store URL {masked!r} must not have a #fragment")
    if not parts.hostname and port is not None:
        raise InvalidStoreUrl(f"store URL {masked!r} has a port but no host")
    database = parts.path.lstrip("/")
    if "/" in database:
        raise InvalidStoreUrl(f"store URL {masked!r}: database name {database!r} contains '/'")
    password = urllib.parse.unquote(parts.password or "")
    if not password:
        query = urllib.parse.parse_qsl(parts.query)
        password = next((value for key, value in query if key.lower() == "password"), "")
    return StoreUrl(backend=POSTGRESQL, masked=masked, dsn=url, password=password)


_SQLITE_SYNCHRONOUS = ("FULL", "NORMAL")


def _sqlite_synchronous(query: str, masked: str) -> str:
    try:
        params = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise InvalidStoreUrl(
            f"store URL {masked!r} has a malformed query {query!r}; expected synchronous=full "
            "or synchronous=normal"
        ) from None
    unknown = sorted(set(params) - {"synchronous"})
    if unknown:
        raise InvalidStoreUrl(
            f"store URL {masked!r} has unknown parameter(s) {', '.join(unknown)}; "
            "an SQLite URL knows only synchronous=full or synchronous=normal"
        )
    values = params.get("synchronous", ["full"])
    level = values[-1].upper()
    if len(values) > 1 or level not in _SQLITE_SYNCHRONOUS:
        raise InvalidStoreUrl(
            f"store URL {masked!r}: synchronous={'&'.join(values)!s} is not allowed; "
            "expected full (a commit survives a power loss) or normal (it survives a "
            "crash of the process)"
        )
    return level


def _parse_sqlite(rest: str, masked: str) -> StoreUrl:
    path, _, query = rest.partition("?")
    synchronous = _sqlite_synchronous(query, masked) if query else "FULL"
    if path in (MEMORY, f"/{MEMORY}"):
        return StoreUrl(backend=SQLITE, masked=masked, path=MEMORY, synchronous=synchronous)
    if not path.startswith("/") or path == "/":
        raise InvalidStoreUrl(
            f"store URL {masked!r} has no file path; use sqlite:///relative.db, "
            "sqlite:////absolute.db or sqlite://:memory:"
        )
    # "sqlite:///x.db" -> "x.db" (relative); "sqlite:////abs/x.db" -> "/abs/x.db"
    return StoreUrl(
        backend=SQLITE,
        masked=masked,
        path=urllib.parse.unquote(path[1:]),
        synchronous=synchronous,
    )
