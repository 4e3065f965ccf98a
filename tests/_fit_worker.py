"""Run by tests/test_fit_parallel.py under `accelerate launch` (2 CPU processes): data-parallel fits of a tiny
memorizer; the main process writes each fitted adapter's tensors (masks, LoRA weights) and stopping log."""

import json
import sys
from pathlib import Path

import torch
from _tiny_models import memorizer_of, token_rows
from datasets import Dataset
from safetensors.torch import save_file

from hf_memmit.unlearning import BalancedSubnetConfig, GradDiffConfig, SubnetConfig, unlearn
from hf_memmit.utils import process_state

# batch sizes that do not divide the sets, so some steps split unevenly or leave a process an empty slice
CASES = {
    "balanced_subnet": lambda: BalancedSubnetConfig(ratio=0.05, epochs=6, batch_size=7, forget_check_every=2),
    "balanced_subnet_weighted": lambda: BalancedSubnetConfig(ratio=0.05, epochs=3, batch_size=3, balance="weighted"),
    "subnet": lambda: SubnetConfig(ratio=0.05, epochs=3, batch_size=5),
    "grad_diff": lambda: GradDiffConfig(lr=3e-3, epochs=6, batch_size=3, forget_check_every=1),
}


def data():
    forget, retain = token_rows(7, seed=1), token_rows(17, seed=2)
    forget_ds = Dataset.from_dict({"input_ids": forget.tolist(), "prompt_length": [8] * len(forget)})
    return memorizer_of(torch.cat([forget, retain])), forget_ds, retain


def fitted_tensors(peft_model) -> dict[str, torch.Tensor]:
    """The adapter's trained state: the masks of a mask adapter, else the trainable (LoRA) weights."""
    base = peft_model.base_model
    if hasattr(base, "keep_masks"):
        return {name: mask.to(torch.uint8) for name, mask in base.keep_masks().items()}
    return {name: p.detach().clone() for name, p in peft_model.named_parameters() if p.requires_grad}


def fit(name: str, accelerator=None):
    model, forget, retain = data()
    peft_model = unlearn(model, CASES[name](), forget, retain, progress=False, accelerator=accelerator)
    return fitted_tensors(peft_model), getattr(peft_model, "unlearning_log", None)


def main(out: str) -> None:
    torch.set_num_threads(1)
    state = process_state()
    logs = {}
    for name in CASES:
        tensors, logs[name] = fit(name, state)
        if state.is_main_process:
            save_file({k.replace(".", "/"): v.contiguous() for k, v in tensors.items()}, f"{out}/{name}.safetensors")
    if state.is_main_process:
        Path(out, "logs.json").write_text(json.dumps({"world": state.num_processes, "logs": logs}))
    state.wait_for_everyone()
    state.destroy_process_group()  # exiting with gloo's threads alive can abort a rank


if __name__ == "__main__":
    main(sys.argv[1])
