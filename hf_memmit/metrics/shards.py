"""The (k, l) check over many windows, in fixed shards: across processes (`accelerate launch`) and resumable.

Windows are cut into shards of `shard_size` consecutive windows; shard i goes to process i mod N. Every shard is
checked by `greedy_match` on its own, with the same batches whatever the number of processes, so N processes give
exactly the verdicts of one. Only one shard's windows are read as Python lists at a time, and each shard's
verdicts are kept as numpy arrays that become the result's Arrow columns (`SCAN_FEATURES`) without a copy, so a
scan holds no more than its result. With a `shard_dir`, each finished shard is written there at once
(atomically), and a run that was killed skips the shards it finds; a manifest (the windows' hash, the model's
`model_fingerprint` and `weight_sums`, batch and shard size) keeps a folder from being resumed by another scan.
Results are gathered in input order on every process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, List, Value
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable
from tqdm.auto import tqdm

from ..models import model_fingerprint, same_weights, weight_sums
from ..utils import atomic_write_json, check_int, process_state
from .greedy import _check_batch_size, greedy_match

MANIFEST = "manifest.json"
SCAN_FEATURES = Features({"extractable": Value("bool"), "token_match": Value("float64"),
                          "predicted_ids": List(Value("int64"))})


class ThisProcessOnly:
    """A `state` for `sharded_greedy_match` that checks every shard in this process, even under a launch with
    several: for a model that DeepSpeed ZeRO-3 partitions, whose forward passes must run in step on all
    processes."""

    num_processes, process_index, is_main_process = 1, 0, True

    def wait_for_everyone(self) -> None:
        pass


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, end) of each shard of n windows."""
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def windows_fingerprint(prompts, targets, bounds: list[tuple[int, int]]) -> str:
    """sha256 of the windows, read one shard at a time."""
    h = hashlib.sha256()
    for start, end in bounds:
        for p, t in zip(prompts[start:end], targets[start:end]):
            h.update(json.dumps([p, t]).encode())
    return h.hexdigest()


def _verdicts(shard: dict) -> tuple[np.ndarray, ...]:
    """One shard's verdicts (as `greedy_match` gives them, or read back from its file) as numpy arrays: verdicts,
    token match, predicted ids flattened, their count per window. Numpy, not Arrow: kept shards allocated from
    Arrow's pool between the transient buffers of reading the next shards keep its pages from being reused."""
    predictions = shard["predictions"]
    return (np.asarray(shard["exact"], dtype=bool), np.asarray(shard["token_match"], dtype=np.float64),
            np.fromiter((t for p in predictions for t in p), dtype=np.int64),
            np.fromiter((len(p) for p in predictions), dtype=np.int32, count=len(predictions)))


def _joined(parts: list[tuple[np.ndarray, ...]]) -> Dataset:
    """The shards' verdicts, in order, as one Dataset of `SCAN_FEATURES`: Arrow over the numpy buffers, no copy.
    Its fingerprint is random: hashing the content, as `Dataset.from_dict` does, pickles the whole result once."""
    def predicted(flat: np.ndarray, lengths: np.ndarray) -> pa.ListArray:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))

    table = pa.table({"extractable": pa.chunked_array([pa.array(p[0]) for p in parts]),
                      "token_match": pa.chunked_array([pa.array(p[1]) for p in parts]),
                      "predicted_ids": pa.chunked_array([predicted(p[2], p[3]) for p in parts])},
                     schema=SCAN_FEATURES.arrow_schema)
    return Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())


def _check_manifest(shard_dir: Path, manifest: dict) -> None:
    path = shard_dir / MANIFEST
    if path.exists():
        found = json.loads(path.read_text(encoding="utf-8"))
        differs = sorted(k for k in manifest if k != "weight_sums" and found.get(k) != manifest[k])
        if not same_weights(found.get("weight_sums", []), manifest["weight_sums"]):
            differs.append("weight_sums")
        if differs:
            raise ValueError(f"{str(shard_dir)!r} holds the shards of another scan ({', '.join(differs)} differ); "
                             "allowed: the same model, windows and settings to resume, or an empty folder")


def sharded_greedy_match(model, prompts, targets, *, batch_size: int = 32, pad_token_id: int = 0,
                         fp32: bool = True, shard_size: int | None = None, state=None,
                         shard_dir: str | Path | None = None, progress: bool = True) -> Dataset:
    """`greedy_match` over all windows, shard by shard (default `shard_size`: 16 batches): a Dataset of
    `SCAN_FEATURES` in input order, one row per window (`extractable` is `greedy_match`'s `exact`,
    `predicted_ids` its `predictions`).

    `prompts`, `targets`: token-id lists that pair up, as lists or as `datasets` Columns (`windows["prompt_ids"]`),
    which are read one shard at a time. `state`: an `accelerate.Accelerator` or `PartialState` (default:
    `hf_memmit.utils.process_state()`, which joins a launch with several processes or is a single process). Each
    process checks its shards on its own device; the result is returned on every process. `shard_dir`: where
    finished shards are kept (written by the process that checked them); resuming needs the same windows, model,
    k, l, batch and shard size."""
    from accelerate.utils import gather_object

    _check_batch_size(batch_size)
    shard_size = 16 * batch_size if shard_size is None else shard_size
    check_int("shard_size", shard_size, 1)
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets; they must pair up")
    if len(prompts) == 0:
        raise ValueError("no rows to measure: prompts and targets are empty")
    state = state if state is not None else process_state()
    bounds = shard_bounds(len(prompts), shard_size)
    folder = Path(shard_dir) if shard_dir is not None else None
    if folder is not None:
        manifest = {"windows": len(prompts), "windows_sha256": windows_fingerprint(prompts, targets, bounds),
                    "model": model_fingerprint(model)["sha256"], "weight_sums": weight_sums(model),
                    "shard_size": shard_size, "batch_size": batch_size,
                    "fp32": fp32, "pad_token_id": pad_token_id}
        _check_manifest(folder, manifest)
        state.wait_for_everyone()
        if state.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(folder / MANIFEST, manifest)
        state.wait_for_everyone()
    mine = {}
    todo = list(range(state.process_index, len(bounds), state.num_processes))
    for i in tqdm(todo, desc="scan shards", disable=not (progress and state.is_main_process)):
        start, end = bounds[i]
        path = folder / f"shard-{i:06d}.json" if folder is not None else None
        if path is not None and path.exists():
            mine[i] = _verdicts(json.loads(path.read_text(encoding="utf-8")))
            continue
        match = greedy_match(model, prompts[start:end], targets[start:end], batch_size=batch_size,
                             pad_token_id=pad_token_id, fp32=fp32, progress=False)
        shard = {"start": start, "exact": match.exact.tolist(), "token_match": match.token_match.tolist(),
                 "predictions": match.predictions}
        if path is not None:
            atomic_write_json(path, shard)
        mine[i] = _verdicts(shard)
    shards = {}
    for part in (gather_object([mine]) if state.num_processes > 1 else [mine]):
        shards.update({int(i): shard for i, shard in part.items()})
    return _joined([shards[i] for i in range(len(bounds))])
