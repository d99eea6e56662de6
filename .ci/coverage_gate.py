"""Coverage gate: each part of tradewind must keep its own floor of line coverage.

A single global percentage lets a well-covered package hide an untested one, so the floor
is checked per folder (and the pure trading core, which is cheap to test exhaustively, has
a higher one). Reads the combined `.coverage` file written by `make test`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parent.parent

# (label, path prefix relative to the repo root, or a tuple of files, minimum percent)
FLOORS: list[tuple[str, tuple[str, ...], float]] = [
    ("runtime", ("runtime/",), 90.0),
    ("storage", ("storage/",), 90.0),
    ("actors", ("actors/",), 90.0),
    ("tradewind", ("tradewind/",), 90.0),
]
# The pure trading core (issue: domain core) must stay at 95% or more.
PURE_CORE_FLOOR = 95.0


def pure_core_files() -> tuple[str, ...]:
    pure = ROOT / "actors" / "PURE_MODULES"
    if not pure.exists():
        return ()
    names = [line.strip() for line in pure.read_text().splitlines()]
    return tuple(f"actors/{n}" for n in names if n and not n.startswith("#"))


def main() -> int:
    cov = coverage.Coverage(data_file=str(ROOT / ".coverage"))
    cov.load()
    data = cov.get_data()
    per_file: dict[str, tuple[int, int]] = {}
    for filename in data.measured_files():
        rel = Path(filename).resolve().relative_to(ROOT).as_posix()
        _, statements, _, missing, _ = cov.analysis2(filename)
        per_file[rel] = (len(statements), len(missing))

    # Files never imported by the suite count as fully missed.
    for folder in ("runtime", "actors", "storage", "tradewind"):
        for path in (ROOT / folder).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in per_file:
                analysis = cov.analysis2(str(path))
                per_file[rel] = (len(analysis[1]), len(analysis[1]))

    floors = list(FLOORS)
    pure = pure_core_files()
    if pure:
        floors.append(("pure trading core", pure, PURE_CORE_FLOOR))

    failed = False
    for label, prefixes, floor in floors:
        files = [f for f in per_file if any(f == p or f.startswith(p) for p in prefixes)]
        statements = sum(per_file[f][0] for f in files)
        missing = sum(per_file[f][1] for f in files)
        if statements == 0:
            print(f"coverage {label:>18}: no statements")
            continue
        percent = 100.0 * (statements - missing) / statements
        verdict = "ok" if percent >= floor else "BELOW FLOOR"
        print(f"coverage {label:>18}: {percent:6.2f}% (floor {floor:.0f}%) {verdict}")
        if percent < floor:
            failed = True
            worst = sorted(files, key=lambda f: per_file[f][1], reverse=True)[:5]
            for f in worst:
                s, m = per_file[f]
                print(f"    {f}: {m} of {s} lines not covered")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
