"""Bake an unlearning adapter into its base model: a plain safetensors checkpoint that loads without hf_memmit."""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftConfig, PeftModel

from ..compat import quiet_peft_wrapping
from ..models import load_causal_lm, model_fingerprint, same_weights, weight_sums
from ..utils import atomic_folder
from .unlearn import RESULT_FILE


def merge_adapter(adapter_dir, out, *, base=None, dtype: str = "auto", device: str = "cpu") -> Path:
    """Load `base` (default: the base model the adapter records), apply the adapter, merge it into the weights
    and save model + tokenizer to `out` (atomically). Refuses a base model other than the one the adapter was
    fitted on (compared by `model_fingerprint`, recorded by `unlearn_records`)."""
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").exists():
        raise ValueError(f"{adapter_dir} is not an adapter folder (no adapter_config.json); allowed: the --out "
                         "folder of `hf-memmit unlearn`")
    base = base or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    if not base:
        raise ValueError(f"{adapter_dir}/adapter_config.json names no base model; allowed: pass base=<model>")
    model, tokenizer = load_causal_lm(str(base), dtype=dtype, device=device)
    record_path = adapter_dir / RESULT_FILE
    if record_path.exists():
        record = json.loads(record_path.read_text())
        expected, found = record.get("base_fingerprint"), model_fingerprint(model)
        same_architecture = expected is None or expected.get("sha256") == found.get("sha256")
        if not same_architecture or not same_weights(record.get("base_weight_sums"), weight_sums(model)):
            raise ValueError(f"the adapter in {adapter_dir} was fitted on a different base model than {base} "
                             f"({'architecture' if not same_architecture else 'weights'} differ); allowed: the base "
                             f"model it was fitted on ({record.get('model')})")
    with quiet_peft_wrapping():
        merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with atomic_folder(out) as tmp:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out)
