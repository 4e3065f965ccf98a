"""Scan scaling on CPU: one process against two (`accelerate launch`, gloo) on the same windows, and the memory of
a 100k-window scan against a 10k-window one.

(a) The same windows (default 8192) scanned by one process with 2 torch threads, one process with 1 thread, and
two processes with 1 thread each (`recipes/accelerate/cpu_2proc.yaml`), `--repeats` interleaved trials of each:
the median windows/s, verdicts compared window for window in every trial, the ratio two processes / one process
reported as measured. The scan time is taken inside
the process between barriers (model and windows already loaded), the launch's own cost separately.
(b) `--large` (default 100k) and `--small` (default 10k) windows, each scanned in its own process: wall time and
the peak RSS sampled while the scan runs, against the RSS before the scan and the bytes of the result it keeps
(the windows' Arrow table with the verdict columns).

The model is a TinyMem math model (default: `hf-memmit train --profile tiny`, trained first if missing, about
4 minutes on 2 cores); the windows are every k + l slice (stride 1) of its train and test sequences.

    python benchmarks/scan_scaling.py
    python benchmarks/scan_scaling.py --model runs/tinymem-math-noise-l4-quick-s0 --windows 8192
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
from common import environment, md_table, train_cell, write_results
from datasets import concatenate_datasets, load_from_disk

from hf_memmit import load_tinymem_dataset, make_windows, scan_windows

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "recipes/accelerate/cpu_2proc.yaml"


def build_windows(out: Path, n: int, k: int, l: int) -> Path:
    """The first `n` stride-1 windows of the tiny math data's train and test sequences, saved with
    `save_to_disk` (a worker memory-maps them instead of holding a copy)."""
    folder = out / f"windows-{n}-k{k}-l{l}"
    if folder.exists():
        return folder
    data = load_tinymem_dataset("math", "noise", "tiny")
    rows = concatenate_datasets([data["train"], data["test"]]).rename_column("id", "record_id")
    windows, _ = make_windows(rows.select_columns(["record_id", "input_ids"]), k=k, l=l, stride=1)
    if len(windows) < n:
        raise SystemExit(f"only {len(windows)} windows of {k + l} tokens at stride 1; ask for fewer or smaller k + l")
    windows.select(range(n)).flatten_indices().save_to_disk(str(folder))
    return folder


def display(path: Path) -> str:
    """A path as the user typed it from the repository root (no machine-specific prefix in the results)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


class PeakRSS:
    """The highest RSS of this process seen by a sampling thread while the block runs."""

    def __enter__(self):
        self.peak, self._done = psutil.Process().memory_info().rss, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        me = psutil.Process()
        while not self._done.wait(0.02):
            self.peak = max(self.peak, me.memory_info().rss)

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, psutil.Process().memory_info().rss)


def worker(args) -> None:
    """One scan, timed between barriers; the main process writes what it measured to `args.result`."""
    from transformers import AutoModelForCausalLM

    from hf_memmit.utils import process_state

    torch.set_num_threads(args.threads)
    state = process_state()
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    windows = load_from_disk(args.windows_dir)
    state.wait_for_everyone()
    rss_before = psutil.Process().memory_info().rss
    started = time.perf_counter()
    with PeakRSS() as rss:
        result = scan_windows(model, windows, batch_size=args.batch_size, progress=False, state=state)
    verdicts = result.windows["extractable"][:]
    state.wait_for_everyone()
    seconds = time.perf_counter() - started
    if state.is_main_process:
        Path(args.result).write_text(json.dumps({
            "processes": state.num_processes, "threads": args.threads, "windows": len(windows),
            "scan_seconds": seconds, "windows_per_s": len(windows) / seconds,
            "rss_before_mb": rss_before / 2**20, "rss_peak_mb": rss.peak / 2**20,
            "result_mb": result.windows.data.nbytes / 2**20,
            "extractable": sum(verdicts), "verdicts": verdicts if args.keep_verdicts else None}))


def run_worker(args, windows_dir: Path, result: Path, *, processes: int, threads: int, verdicts: bool) -> dict:
    cmd = [str(Path(__file__).resolve()), "--worker", "--model", str(args.model), "--windows-dir", str(windows_dir),
           "--threads", str(threads), "--batch-size", str(args.batch_size), "--result", str(result)]
    if verdicts:
        cmd.append("--keep-verdicts")
    if processes == 1:
        cmd = [sys.executable, *cmd]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CPU_2PROC), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    measured = json.loads(result.read_text())
    measured["launch_seconds"] = time.perf_counter() - started - measured["scan_seconds"]
    print(f"{processes} process(es) x {threads} thread(s), {measured['windows']} windows: "
          f"{measured['windows_per_s']:.1f} windows/s", flush=True)
    return measured


def main(args) -> None:
    out = ROOT / "runs/scan_scaling"
    if args.model is None:
        args.model = out / "model"
        train_cell(args.model, ["--task", "math", "--artifact", "noise", "--layers", "4", "--profile", "tiny"])
    out.mkdir(parents=True, exist_ok=True)

    same = build_windows(out, args.windows, args.k, args.l)
    setups = {"1 process x 2 threads": (1, 2), "1 process x 1 thread": (1, 1), "2 processes x 1 thread": (2, 1)}
    trials = {name: [] for name in setups}
    for trial in range(args.repeats):  # interleaved, so that a slow spell of the machine hits every setup
        for name, (processes, threads) in setups.items():
            trials[name].append(run_worker(args, same, out / f"scaling_{processes}p{threads}t_{trial}.json",
                                           processes=processes, threads=threads, verdicts=True))
    reference = trials["1 process x 2 threads"][0]["verdicts"]
    identical = {name: all(t["verdicts"] == reference for t in ts) for name, ts in trials.items()}
    runs = {}
    for name, ts in trials.items():  # the median trial by speed
        median = sorted(ts, key=lambda t: t["windows_per_s"])[len(ts) // 2]
        runs[name] = {**{k: v for k, v in median.items() if k != "verdicts"},
                      "windows_per_s_trials": [t["windows_per_s"] for t in ts]}
    base = runs["1 process x 2 threads"]["windows_per_s"]
    for r in runs.values():
        r["ratio_vs_1x2"] = r["windows_per_s"] / base

    memory = {}
    for n in (args.small, args.large):
        folder = build_windows(out, n, args.k, args.l)
        memory[n] = run_worker(args, folder, out / f"memory_{n}.json", processes=1, threads=2, verdicts=False)
        memory[n]["rss_growth_mb"] = memory[n]["rss_peak_mb"] - memory[n]["rss_before_mb"]
    small, large = memory[args.small], memory[args.large]
    growth = {"rss_growth_small_mb": small["rss_growth_mb"], "rss_growth_large_mb": large["rss_growth_mb"],
              "result_small_mb": small["result_mb"], "result_large_mb": large["result_mb"],
              "extra_growth_mb": large["rss_growth_mb"] - small["rss_growth_mb"],
              "extra_result_mb": large["result_mb"] - small["result_mb"]}

    load = os.getloadavg()
    result = {"model": display(args.model), "k": args.k, "l": args.l, "batch_size": args.batch_size,
              "scaling_windows": args.windows, "repeats": args.repeats, "scaling": runs, "verdicts_identical": identical,
              "memory": {str(n): m for n, m in memory.items()}, "memory_growth": growth,
              "load_average_at_end": load, "environment": environment()}
    columns = ["run", "windows", "scan_seconds", "windows_per_s", "ratio_vs_1x2", "launch_seconds", "extractable"]
    mem_cols = ["windows", "scan_seconds", "windows_per_s", "rss_before_mb", "rss_peak_mb", "rss_growth_mb",
                "result_mb"]
    two, one_1t = runs["2 processes x 1 thread"], runs["1 process x 1 thread"]
    header = (f"Model: `{display(args.model)}` (TinyMem math, 4 layers); windows: stride-1 slices of its train and "
              f"test sequences. Load average at the end: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}.")
    verdicts = (f"Verdicts identical to 1 process x 2 threads: {json.dumps(identical)}. Two processes / one "
                f"process (2 threads): {two['ratio_vs_1x2']:.3f}; two processes / one process (1 thread): "
                f"{two['windows_per_s'] / one_1t['windows_per_s']:.3f}.")
    growth_line = (f"From {args.small} to {args.large} windows the scan's RSS growth rose by "
                   f"{growth['extra_growth_mb']:.1f} MB while the result it keeps rose by "
                   f"{growth['extra_result_mb']:.1f} MB (Arrow table of the windows with their verdicts and "
                   "predicted tokens).")
    markdown = "\n\n".join([
        f"# Scan scaling on CPU: {args.windows} windows (k={args.k}, l={args.l}), scan batch {args.batch_size}",
        header, f"## One process against two (same windows; median of {args.repeats} interleaved trials)",
        md_table([{"run": name, **r} for name, r in runs.items()], columns), verdicts,
        "## Memory: 10x the windows", md_table(list(memory.values()), mem_cols), growth_line,
    ]) + "\n"
    write_results(args.name, result, markdown)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a TinyMem run folder (default: train the tiny one)")
    parser.add_argument("--windows", type=int, default=8192, help="windows for 1 vs 2 processes (>= 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="trials of each setup; the median is reported")
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--l", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--name", default="scan_scaling")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--windows-dir", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--keep-verdicts", action="store_true", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    worker(parsed) if parsed.worker else main(parsed)
