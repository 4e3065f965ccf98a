"""Shared by the benchmarks: environment header, atomic JSON + Markdown output."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

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
