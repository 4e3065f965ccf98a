"""What a TinyMem repo holds: which files travel, which are refused (pickles), and the artifact fingerprint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..tinymem.run_dir import RUN_FILE

TINYMEM_FILE = RUN_FILE  # the same name: a downloaded repo is a run directory too
UNLEARNING_FILE = "unlearning_result.json"
# files a checkpoint repo carries; everything else in a run directory (Trainer checkpoints, optimizer
# state, training_args.bin) stays home
MODEL_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
                  "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                  "added_tokens.json", "chat_template.jinja")
ADAPTER_PATTERNS = ("adapter_config.json", "*.safetensors")
# torch.save/pickle formats: loading one can run arbitrary code, so we never push or load them
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def find_pickles(folder: str | Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.suffix in PICKLE_SUFFIXES)


def require_safetensors(folder: str | Path, weights: str, what: str) -> None:
    """Raise unless `folder` has `weights` (or its sharded form); name any pickle found instead."""
    folder = Path(folder)
    stem = weights.removesuffix(".safetensors")
    if (folder / weights).exists() or (folder / f"{weights}.index.json").exists() \
            or any(folder.glob(f"{stem}-*-of-*.safetensors")):
        return
    pickles = find_pickles(folder)
    if pickles:
        raise ValueError(f"{what} {folder} holds its weights in pickle format ({', '.join(pickles)}); hf_memmit "
                         f"only pushes and loads safetensors ({weights}) and never unpickles them. Convert with "
                         "`model.save_pretrained(dir)` (safetensors by default) from a source you trust.")
    raise FileNotFoundError(f"{what} {folder} has no {weights}")


def artifact_fingerprint(rows) -> str:
    """sha256 of the measured rows (ids and token ids): proves regenerated artifacts equal the pushed ones."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps([r["id"], list(r["input_ids"]), list(r["clean_input_ids"])]).encode())
    return h.hexdigest()


def artifact_split(artifact: str) -> str:
    """The split memorization is measured on: held-out triggered rows for backdoors, noised rows otherwise."""
    return "backdoor_test" if artifact == "backdoor" else "forget"
