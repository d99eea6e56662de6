"""Versioned SQL migrations: finding them and deciding what to apply. Pure.

Design notes
------------
Migrations are plain SQL files shipped inside the package, one folder per backend
(``migrations/postgresql/0001_initial.sql``, ``migrations/sqlite/0001_initial.sql``), so
a DBA can read exactly what runs and a non-editable install carries them as package
data. A file's name without ``.sql`` is its version (``0001_initial``); versions apply in
name order, each at most once, recorded in ``schema_migrations``.

The backends do the I/O (PostgreSQL under ``pg_advisory_xact_lock`` so two processes
starting together apply each migration once; SQLite under ``BEGIN IMMEDIATE``); this
module only lists the files and computes what is missing.

Statements are split on ``;`` at the end of a line: the migration files keep to that
(no ``;`` inside literals), and SQLite's driver runs one statement per call inside a
transaction (its ``executescript`` would commit first).
"""

from __future__ import annotations

from importlib import resources

import attrs

MIGRATIONS_TABLE = "schema_migrations"


@attrs.frozen
class Migration:
    """One migration file: ``version`` (its file name without ``.sql``) and its SQL."""

    version: str
    sql: str

    def statements(self) -> tuple[str, ...]:
        """The SQL split into single statements, comments and blank lines dropped."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        parts = "\n".join(lines).split(";\n")
        return tuple(p.strip().rstrip(";").strip() for p in parts if p.strip().rstrip(";"))


def available_migrations(backend: str) -> tuple[Migration, ...]:
    """Every migration shipped for ``backend`` (``"postgresql"`` or ``"sqlite"``), in order."""
    folder = resources.files("tradewind.storage").joinpath("migrations", backend)
    found = [
        Migration(version=entry.name.removesuffix(".sql"), sql=entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return tuple(sorted(found, key=lambda m: m.version))


def missing_migrations(
    available: tuple[Migration, ...], applied: set[str]
) -> tuple[Migration, ...]:
    """The migrations of ``available`` not in ``applied``, in the order to apply them."""
    return tuple(m for m in available if m.version not in applied)
