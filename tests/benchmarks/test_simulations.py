"""The dispatch and load benchmarks run end to end (small: a few runners, a few seconds),
against a real manager process, and report no errors, so their figures can be trusted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(name: str, *args: str, tmp_path: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--workdir", str(tmp_path), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "COLUMNS": "200", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.e2e
def test_dispatch_benchmark_claims_every_task(tmp_path: Path) -> None:
    out = run_benchmark(
        "dispatch", "--runners", "6", "--jobs", "3", "--tasks", "10", tmp_path=tmp_path
    )
    row = next(line for line in out.splitlines() if "SQLite" in line)
    cells = [cell.strip() for cell in row.strip("│ ").split("│")]
    claims_per_s, samples = float(cells[1]), int(cells[5])
    assert claims_per_s > 0
    assert samples == 3 * 9  # every task after the first of each chain was timed
    assert "retried" not in out and "taken back" not in out


@pytest.mark.e2e
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_load_benchmark_reports_no_errors(tmp_path: Path, database_url: str) -> None:
    """On SQLite with one manager process, on PostgreSQL with two (``--workers``)."""
    db = ("--db", database_url, "--workers", "2") if database_url.startswith("postgresql") else ()
    out = run_benchmark(
        "load",
        *("--runners", "8", "--viewers", "3", "--seconds", "6", "--jobs", "4", "--tasks", "5"),
        *db,
        tmp_path=tmp_path,
    )
    assert "heartbeat" in out and "claim" in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert rows, out
    errors = [int(line.strip("│ ").split("│")[-1].strip()) for line in rows]
    assert sum(errors) == 0, out
    complete = next(line for line in rows if "complete + claim next" in line)
    assert int(complete.strip("│ ").split("│")[1]) > 0, out  # runners did finish tasks
