"""Small shared helpers: input validation with clear messages (every `check_*` of the library), atomic file writes, run metadata."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}")


def check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}={value!r} is out of range; allowed: an integer >= {low}")


def check_bool(name: str, value) -> None:
    if type(value) is not bool:
        raise ValueError(f"{name}={value!r} is not supported; allowed: True, False")


def check_positive(name: str, value) -> None:
    check_range(name, value, 0.0, float("inf"), low_open=True, high_open=True)


def check_range(name: str, value: float, low: float, high: float, *, low_open=False, high_open=False) -> None:
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name}={value!r} is out of range; allowed: {lb}{low}, {high}{hb}")


def device_of(model):
    """Where a model's inputs go: the device of its first parameter, or for a model spread over devices by a
    `device_map` (Accelerate big-model inference, `hf_device_map`), the first device of the map that holds weights
    (not "disk": offloaded weights sit on the meta device until their layer runs; all on disk: the CPU)."""
    import torch

    device_map = getattr(model, "hf_device_map", None)
    if not device_map:
        return next(model.parameters()).device
    placed = [d for d in device_map.values() if d != "disk"] or ["cpu"]
    return torch.device("cuda", placed[0]) if isinstance(placed[0], int) else torch.device(placed[0])


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike):
    """A binary file to write (yielded) in a temp file of the same folder; on success it is fsynced and renamed to
    `path`, so readers never see half a file; on failure `path` is left as it was. For output written in pieces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (`atomic_open`)."""
    with atomic_open(path) as f:
        f.write(data)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike):
    """Build a folder in a `<name>.tmp` sibling (yielded), then swap it in for `path`: readers see the old
    folder or the whole new one, never half of it. A failed build leaves `path` as it was."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


CACHE_ENV = "HF_MEMMIT_CACHE"


def cache_dir() -> Path:
    """Root of hf_memmit's own cache (converted GGUF checkpoints, unpacked corpora): `$HF_MEMMIT_CACHE` if set,
    else `~/.cache/hf_memmit`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "hf_memmit"


_LAUNCHERS = {"accelerate": "accelerate", "torchrun": "torchrun", "deepspeed": "deepspeed",
              "accelerate.commands.launch": "accelerate launch", "torch.distributed.run": "torchrun"}


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that started this run, as the user typed it: `python <script> ARGS` (ARGS: `argv`, else
    `sys.argv[1:]`), or under a launcher (`accelerate launch`, `torchrun`, `deepspeed`, or their `python -m`
    forms) the launcher's own command line, read from the launching process (Linux /proc: the worker's parent,
    or a process above it)."""
    own = " ".join(["python", script, *(sys.argv[1:] if argv is None else argv)])
    if "LOCAL_RANK" not in os.environ and not any(k.startswith("ACCELERATE_") for k in os.environ):
        return own
    pid = os.getppid()
    for _ in range(3):  # worker <- launcher (<- the launcher's own launcher)
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        for i, arg in enumerate(args[:3]):
            name = arg if i and args[i - 1] == "-m" else Path(arg).name
            if name in _LAUNCHERS:
                return " ".join([_LAUNCHERS[name], *args[i + 1:]])
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the process state: its parent's pid
    return own


def library_versions() -> dict[str, str]:
    """Versions recorded next to every result, so a number can be traced to the stack that produced it."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for name in ("hf_memmit", "torch", "transformers", "peft", "datasets", "evaluate", "accelerate",
                 "huggingface_hub"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def process_state():
    """accelerate's `PartialState` of this process: under `accelerate launch` with several processes it joins
    them (over gloo on CPU: accelerate asks for `cpu=True` there, which a launch with `use_cpu` or a machine
    without CUDA gets here; a DeepSpeed launch gets accelerate's DeepSpeed state); otherwise a single process."""
    import torch
    from accelerate import PartialState

    cpu = os.environ.get("ACCELERATE_USE_CPU", "false").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        cpu = False  # a DeepSpeed launch: its state (DeepSpeed picks the CPU itself where there is no GPU)
    state = PartialState(cpu=cpu)
    if state.distributed_type == "DEEPSPEED" and torch.distributed.is_initialized() \
            and state.num_processes != torch.distributed.get_world_size():
        # without a GPU accelerate finds no backend and records one process, though DeepSpeed joined them all
        state.num_processes = torch.distributed.get_world_size()
        state.process_index = torch.distributed.get_rank()
        state.local_process_index = int(os.environ.get("LOCAL_RANK", state.process_index))
    return state

