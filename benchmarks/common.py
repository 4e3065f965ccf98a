"""Shared by the benchmarks: environment header, atomic JSON + Markdown output."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from hf_memmit.tinymem import is_finished
from hf_memmit.utils import atomic_write_bytes, atomic_write_json, library_versions

RESULTS = Path(__file__).parent / "results"


def environment() -> dict:
    env = {"machine": platform.machine(), "cpu_threads": torch.get_num_threads(),
           "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, **library_versions()}
    return env


def write_results(name: str, result: dict, markdown: str, out_dir: Path = RESULTS) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    jpath, mpath = out_dir / f"{name}.json", out_dir / f"{name}.md"
    atomic_write_json(jpath, result)
    atomic_write_bytes(mpath, markdown.encode())
    print(markdown)
    print(f"wrote {jpath} and {mpath}")
    return jpath, mpath


def md_table(rows: list[dict], columns: list[str]) -> str:
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


__all__ = ["environment", "write_results", "md_table", "json"]


def train_cell(out: Path, train_args: list[str]) -> None:
    """`hf-memmit train TRAIN_ARGS --out OUT` in a subprocess, unless OUT holds a finished run (an interrupted one
    resumes)."""
    if is_finished(out):
        print(f"{out.name}: finished, skipped", flush=True)
        return
    cmd = [sys.executable, "-m", "hf_memmit.cli", "train", *train_args, "--out", str(out)]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)

