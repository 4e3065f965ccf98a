"""The (k, l) check over many windows, in fixed shards: across processes (`accelerate launch`) and resumable.

Windows are cut into shards of `shard_size` consecutive windows; shard i goes to process i mod N. Every shard is
checked by `greedy_match` on its own, with the same batches whatever the number of processes, so N processes give
exactly the verdicts of one. With a `shard_dir`, each finished shard is written there at once (atomically), and a
run that was killed skips the shards it finds; a manifest (the windows' hash, the model's `model_fingerprint` and
`weight_sums`, batch and shard size) keeps a folder from being resumed by another scan. Results are gathered in
input order on every process.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..models import model_fingerprint, same_weights, weight_sums
from ..utils import atomic_write_json, check_int, process_state
from .greedy import GreedyMatch, _check_batch_size, greedy_match

MANIFEST = "manifest.json"


def shard_bounds(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[start, end) of each shard of n windows."""
    return [(s, min(s + shard_size, n)) for s in range(0, n, shard_size)]


def windows_fingerprint(prompts: list[list[int]], targets: list[list[int]]) -> str:
    h = hashlib.sha256()
    for p, t in zip(prompts, targets):
        h.update(json.dumps([p, t]).encode())
    return h.hexdigest()


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


def sharded_greedy_match(model, prompts: list[list[int]], targets: list[list[int]], *, batch_size: int = 32,
                         pad_token_id: int = 0, fp32: bool = True, shard_size: int | None = None, state=None,
                         shard_dir: str | Path | None = None, progress: bool = True) -> GreedyMatch:
    """`greedy_match` over all windows, shard by shard (default `shard_size`: 16 batches).

    `state`: an `accelerate.Accelerator` or `PartialState` (default: `hf_memmit.utils.process_state()`, which
    joins a launch with several processes or is a single process). Each process checks its shards on its own device; the result, in
    input order, is returned on every process. `shard_dir`: where finished shards are kept (written by the process
    that checked them); resuming needs the same windows, model, k, l, batch and shard size."""
    from accelerate.utils import gather_object

    _check_batch_size(batch_size)
    shard_size = 16 * batch_size if shard_size is None else shard_size
    check_int("shard_size", shard_size, 1)
    state = state if state is not None else process_state()
    bounds = shard_bounds(len(prompts), shard_size)
    folder = Path(shard_dir) if shard_dir is not None else None
    if folder is not None:
        manifest = {"windows": len(prompts), "windows_sha256": windows_fingerprint(prompts, targets),
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
            mine[i] = json.loads(path.read_text(encoding="utf-8"))
            continue
        match = greedy_match(model, prompts[start:end], targets[start:end], batch_size=batch_size,
                             pad_token_id=pad_token_id, fp32=fp32, progress=False)
        mine[i] = {"start": start, "exact": match.exact.tolist(), "token_match": match.token_match.tolist(),
                   "predictions": match.predictions}
        if path is not None:
            atomic_write_json(path, mine[i])
    shards = {}
    for part in (gather_object([mine]) if state.num_processes > 1 else [mine]):
        shards.update({int(i): shard for i, shard in part.items()})
    ordered = [shards[i] for i in range(len(bounds))]
    return GreedyMatch(exact=torch.tensor([x for s in ordered for x in s["exact"]], dtype=torch.bool),
                       token_match=torch.tensor([x for s in ordered for x in s["token_match"]], dtype=torch.float64),
                       predictions=[p for s in ordered for p in s["predictions"]])
