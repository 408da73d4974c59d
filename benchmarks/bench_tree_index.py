"""Strict-mode index on a big tree (docs/authorization.md, rule 4): build time, entries, size.

Generates DIRS directories of FILES empty files each (default 1000 x 1000 = 1,000,000 files) with
an ordinary umask (022, one owner), plus a few deviants that must be recorded: a private file of
another owner, a read-only file in a group-writable directory, a sticky directory holding other
users' files, a private directory. Scans it once with ``scan_tree`` and prints the build time,
entries stored, serialized size and peak memory. I/O heavy: run it alone, e.g. with ``nice``.

    nice -n 10 python benchmarks/bench_tree_index.py [--dirs 1000] [--files 1000] [--base /tmp]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import stat
import tempfile
import time

from scitoken_issuer.services.tree_index import scan_tree
from scitoken_issuer.services.users import PosixUser

ALICE = PosixUser("alice", 20001, 20001, frozenset({20001, 21000}))


def generate(top: str, dirs: int, files: int) -> int:
    """The tree under ``top``; returns the number of deviants placed (0 when not root: no chown)."""
    os.umask(0o022)
    os.chmod(top, 0o755)
    for d in range(dirs):
        directory = f"{top}/d{d:04d}"
        os.mkdir(directory)
        for f in range(files):
            os.mknod(f"{directory}/f{f:04d}", 0o644 | stat.S_IFREG)
    if os.geteuid() != 0:
        return 0
    os.chown(f"{top}/d0001/f0001", 20002, 20002)  # a private file of bob's
    os.chmod(f"{top}/d0001/f0001", 0o600)
    os.chown(f"{top}/d0002", 0, 21000)  # group-writable directory, root's read-only file inside
    os.chmod(f"{top}/d0002", 0o775)
    os.chmod(f"{top}/d0003", 0o1777)  # sticky, holding bob's and carol's files
    os.chown(f"{top}/d0003/f0001", 20002, 20002)
    os.chown(f"{top}/d0003/f0002", 20003, 20003)
    os.chown(f"{top}/d0004", 20002, 20002)  # bob's private directory
    os.chmod(f"{top}/d0004", 0o700)
    return 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dirs", type=int, default=1000)
    parser.add_argument("--files", type=int, default=1000, help="files per directory")
    parser.add_argument("--base", default=None, help="where to create the temporary tree")
    args = parser.parse_args()
    top = tempfile.mkdtemp(prefix="bench-tree-index-", dir=args.base)
    try:
        t0 = time.perf_counter()
        deviants = generate(top, args.dirs, args.files)
        made = time.perf_counter() - t0
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        index = scan_tree(top)
        scanned = time.perf_counter() - t0
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = len(index.to_json().encode())
        t0 = time.perf_counter()
        for _ in range(1000):
            index.first_denial("/", ALICE, "read")
        query_us = (time.perf_counter() - t0) * 1000
        print(f"tree: {index.directories:,} directories, {index.files:,} files, {deviants} deviants; "
              f"generated in {made:.1f} s")
        print(f"index build (scan_tree): {scanned:.1f} s, {index.files / scanned:,.0f} files/s")
        print(f"entries stored: {len(index)}")
        for line in list(index.describe())[1:]:
            print(f"    {line}")
        print(f"serialized size: {size:,} bytes")
        print(f"peak RSS: {rss_before / 1024:.1f} MiB before the scan, {rss_after / 1024:.1f} MiB after")
        print(f"first_denial('/', alice, read): {query_us:.1f} µs per query")
    finally:
        shutil.rmtree(top)


if __name__ == "__main__":
    main()
