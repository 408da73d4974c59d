"""Summarise py-spy collapsed stacks (``--profile`` of ``python -m benchmarks``): where the time went.

    python -m benchmarks.profile PROFILE_DIR/*.txt [--top 12]

For each file, over the samples of busy threads (idle gunicorn threads left out): the share of
samples per area (see ``AREAS``) and the functions most often on top of the stack (self time).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: area -> pattern matched against py-spy frames "function (package/file.py:line)". A sample
#: belongs to the innermost frame that matches an area (a database call made by a grant is
#: database time, the grant's own work is authlib time), else to "other".
AREAS = {
    "database (SQLAlchemy, psycopg, sqlite3)": r"\((sqlalchemy|psycopg|flask_sqlalchemy|sqlite3)/",
    "JOSE (joserfc, cryptography: sign, verify)": r"\((joserfc|cryptography)/",
    "Redis client": r"\(redis/",
    "rate limiter (flask_limiter, limits)": r"\((flask_limiter|limits)/",
    "CSRF and session (flask_wtf, flask sessions)": r"\(flask_wtf/|\(flask/sessions\.py",
    "audit and logging": r"\(logging/|\(scitoken_issuer/services/audit\.py",
    "JSON encoding": r"\(json/",
    "authlib (grants, client authentication)": r"\(authlib/",
    "scitoken_issuer (own code)": r"\(scitoken_issuer/",
    "Flask and werkzeug": r"\((flask|werkzeug)/",
    "gunicorn (HTTP parsing and writing)": r"\(gunicorn/",
}
#: a stack ending here is a thread waiting for work, not doing any
IDLE = re.compile(r"^(_worker \(concurrent/futures/thread\.py|\w+Selector\.select \(selectors\.py"
                  r"|Arbiter\.|sleep|wait \(threading\.py)")


def parse(path: Path) -> Counter:
    stacks: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


def summarise(path: Path, top: int) -> str:
    stacks = parse(path)
    areas: Counter = Counter()
    leaves: Counter = Counter()
    patterns = {name: re.compile(pattern) for name, pattern in AREAS.items()}
    busy = 0
    for stack, count in stacks.items():
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames or IDLE.match(frames[-1]):
            continue
        busy += count
        areas[next((name for frame in reversed(frames) for name, pattern in patterns.items()
                    if pattern.search(frame)), "other")] += count
        leaves[re.sub(r":\d+\)$", ")", frames[-1])] += count
    total = busy or 1
    lines = [f"## {path.stem} ({busy} busy samples)", "", "| area (innermost) | share |", "|---|---|"]
    lines += [f"| {name} | {count / total:.0%} |" for name, count in areas.most_common()]
    lines += ["", "| top of stack (self) | share |", "|---|---|"]
    lines += [f"| `{frame}` | {count / total:.1%} |" for frame, count in leaves.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args()
    print("\n\n".join(summarise(path, args.top) for path in args.files))


if __name__ == "__main__":
    main()
