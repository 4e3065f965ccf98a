"""Run by tests/test_scan_shards.py under `accelerate launch` (2 CPU processes): the sharded check of a tiny
memorizer's windows; the main process writes the verdicts as JSON."""

import json
import sys
from pathlib import Path

import torch
from _tiny_models import memorizer_of, token_rows

from hf_memmit.metrics.shards import sharded_greedy_match
from hf_memmit.utils import process_state


def windows():
    rows = token_rows(24, length=16, seed=3)
    return rows, [r[:8] for r in rows.tolist()], [r[8:] for r in rows.tolist()]


def main(out: str, shard_dir: str | None) -> None:
    torch.set_num_threads(1)
    rows, prompts, targets = windows()
    model = memorizer_of(rows[:12])  # half the windows memorized
    state = process_state()
    match = sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, state=state,
                                 shard_dir=shard_dir, progress=False)
    if state.is_main_process:
        cols = match[:]
        Path(out).write_text(json.dumps({"world": state.num_processes, "exact": cols["extractable"],
                                         "token_match": cols["token_match"], "predictions": cols["predicted_ids"]}))
    state.wait_for_everyone()
    state.destroy_process_group()  # exiting with gloo's threads alive can abort a rank


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
