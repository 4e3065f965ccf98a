"""A bench results folder, the one reader and writer of its files:

    RESULTS_DIR/bench.json               what each call asked for (grid, settings, methods, retain size)
    RESULTS_DIR/models/<setting>/        each setting's trained TinyMem run (its tinymem.json holds the curve)
    RESULTS_DIR/settings/<setting>.json  the unedited model's numbers and the Extra fine-tuning run (time budget)
    RESULTS_DIR/runs.jsonl               one JSON line per unlearning run, appended as each finishes

Lines are appended and flushed one at a time, so a killed sweep loses at most the run in progress; a torn last
line is ignored when reading.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..utils import atomic_write_json

RUNS_FILE = "runs.jsonl"
BENCH_FILE = "bench.json"


def run_key(setting: str, method: str, options: dict) -> str:
    """The identity of one run: a finished run with the same key is not run again."""
    return f"{setting}|{method}|{json.dumps(options, sort_keys=True)}"


def read_runs(results_dir: str | os.PathLike) -> list[dict]:
    path = Path(results_dir) / RUNS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # the torn last line of a killed sweep
            continue
    return rows


def append_run(results_dir: str | os.PathLike, row: dict) -> None:
    path = Path(results_dir) / RUNS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a") as f:
        # after a kill mid-line, start a new line so the torn one stays the only unreadable line
        f.write(("\n" if torn else "") + json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def model_dir(results_dir: str | os.PathLike, setting: str) -> Path:
    return Path(results_dir) / "models" / setting


def setting_path(results_dir: str | os.PathLike, setting: str) -> Path:
    return Path(results_dir) / "settings" / f"{setting}.json"


def read_setting(results_dir: str | os.PathLike, setting: str) -> dict | None:
    path = setting_path(results_dir, setting)
    return json.loads(path.read_text()) if path.exists() else None


def write_setting(results_dir: str | os.PathLike, setting: str, record: dict) -> None:
    path = setting_path(results_dir, setting)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def record_invocation(results_dir: str | os.PathLike, invocation: dict) -> None:
    """Add what one `bench` call asked for to `bench.json` (a folder may be filled by several calls)."""
    path = Path(results_dir) / BENCH_FILE
    record = json.loads(path.read_text()) if path.exists() else {"invocations": []}
    record["invocations"].append(invocation)
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)
