"""The README's benchmark command keeps working: ``python -m benchmarks`` starts the issuer under
gunicorn with the Procfile's flags, drives it with wrk beside its floor and prints the table.
Only that it runs and that every request was answered as the scenario expects is checked here;
speed is measured by the benchmark, never asserted in tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (Debian package) is installed by scripts/run-tests")
def test_benchmark_entry_point_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--duration", "1", "--config", "sqlite",
                           "--scenario", "client_credentials", "--no-peer", "--markdown",
                           "--log-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[1:-1]]
            for line in done.stdout.splitlines() if line.startswith("| ")}
    row = rows["client_credentials"]
    assert row[1] == "sqlite" and row[5] == "0"  # answered, no errors
    assert float(row[2].replace(",", "")) > 0 and row[8]  # requests/s and its ratio to the floor are printed
    assert float(row[10]) > 0 and float(rows["L2 bare Flask, one fresh JWT"][10]) > 0  # workers' CPU per request
    protocol = rows["P authlib alone: client_credentials"]  # authlib's grant alone, same load, same floor
    assert protocol[5] == "0" and protocol[7].startswith("L2 ") and float(protocol[8]) > 0
