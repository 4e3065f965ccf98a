"""Run by tests/test_fit_parallel.py under `accelerate launch` (2 CPU processes) with a DeepSpeed ZeRO-3 plugin:
the mask fits of `_fit_worker` through the DeepSpeed engine, every parameter (the scores included) partitioned
over the two processes; the main process writes each fit's masks, its stopping log, and what was partitioned."""

import json
import sys
from pathlib import Path

import torch
from _fit_worker import data, fitted_tensors
from accelerate import Accelerator
from accelerate.utils import DeepSpeedPlugin
from safetensors.torch import save_file

from hf_memmit.unlearning import BalancedSubnetConfig, DurableConfig, SubnetConfig, unlearn

# uneven slices, and steps that leave a process no row (subnet: 7 rows in batches of 3; weighted: batches of 1)
ZERO3_CASES = {
    "balanced_subnet": lambda: BalancedSubnetConfig(ratio=0.05, epochs=6, batch_size=7, forget_check_every=2),
    "subnet_one_row_step": lambda: SubnetConfig(ratio=0.05, epochs=2, batch_size=3),
    # two loss calls per step, each a slice of one row: one process has a row of each, the other none
    "balanced_subnet_weighted_one_row": lambda: BalancedSubnetConfig(ratio=0.05, epochs=1, batch_size=1,
                                                                     balance="weighted"),
}
# ZeRO-3 with every parameter partitioned, however small (by default small ones stay whole on every process)
ZERO3 = {"zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
         "train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto"}


def zero3_fit(name: str, accelerator=None):
    model, forget, retain = data()
    peft_model = unlearn(model, ZERO3_CASES[name](), forget, retain, progress=False, accelerator=accelerator)
    return fitted_tensors(peft_model), getattr(peft_model, "unlearning_log", None), peft_model


def main(out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    accelerator = Accelerator(deepspeed_plugin=DeepSpeedPlugin(hf_ds_config=json.loads(json.dumps(ZERO3))))
    logs, partitioned = {}, {}
    for name in ZERO3_CASES:
        accelerator.state.deepspeed_plugin.deepspeed_config.update(json.loads(json.dumps(ZERO3)))
        tensors, logs[name], peft_model = zero3_fit(name, accelerator)
        params = list(peft_model.parameters())  # ZeRO-3 params, held as empty tensors outside their layer's run
        partitioned[name] = all(hasattr(p, "ds_id") for p in params) and sum(p.numel() == 0 for p in params) > 1
        if dist.get_rank() == 0:
            save_file({k.replace(".", "/"): v.contiguous() for k, v in tensors.items()}, f"{out}/{name}.safetensors")
        accelerator.free_memory()
    model, forget, _ = data()
    try:  # a method that does not fit through the engine is refused, naming those that do
        unlearn(model, DurableConfig(ratio=0.05), forget, progress=False, accelerator=accelerator)
        refused = None
    except ValueError as err:
        refused = str(err)
    if dist.get_rank() == 0:
        Path(out, "logs.json").write_text(json.dumps({"world": dist.get_world_size(), "logs": logs,
                                                      "partitioned": partitioned, "refused": refused}))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
