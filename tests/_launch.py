"""Run a command under `accelerate launch` with 2 CPU processes (gloo), as the multi-process tests do."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CPU_2PROC = ROOT / "recipes/accelerate/cpu_2proc.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_launch(args: list[str], config=CPU_2PROC, timeout: int = 300) -> subprocess.CompletedProcess:
    """`accelerate launch --config_file CONFIG ARGS...` from the repository root, one torch thread per process,
    tests/ on the path; fails the test with the tail of the output on a non-zero exit."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--main_process_port",
           str(free_port()), *map(str, args)]
    done = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done
