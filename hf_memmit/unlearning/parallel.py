"""Data-parallel fitting: under `accelerate launch` with N processes, every process takes a contiguous slice of
each optimizer step's batch (`PartialState.split_between_processes`), computes its share of the step's loss, and
the gradients are summed across processes (`accelerate.utils.reduce`) before the optimizer step. A batch mean is
taken as each share's row sum over the global batch size, so the summed gradient is the gradient of the one-process
loss: N processes take the same steps as one process with the same global batch (up to the order of float sums).

A method that splits its work this way is registered with `data_parallel=True` and takes a `split` argument; the
others fit the whole method on every process (the same result, no speed-up)."""

from __future__ import annotations

import torch


class Split:
    """This process's part of the work. `state`: an `accelerate.Accelerator` or `PartialState`; None: one process.
    `splits_checks`: whether the stopping check may also split its rows over the processes; `check_fp32`: whether
    it may upcast the model to float32 in place (`greedy_match`'s `fp32`)."""

    splits_checks = True
    check_fp32 = True

    def __init__(self, state=None):
        self.state = state
        self.processes = 1 if state is None else state.num_processes

    def part(self, index: torch.Tensor) -> torch.Tensor:
        """This process's contiguous slice of a step's row indices (may be empty when the batch has fewer rows
        than processes)."""
        if self.processes == 1:
            return index
        with self.state.split_between_processes(index) as part:
            return part

    def mean(self, values: torch.Tensor, n: int) -> torch.Tensor:
        """This process's share of the mean over a global batch of `n` rows, given its rows' `values`."""
        return values.mean() if self.processes == 1 else values.sum() / n

    def prepare(self, model, optimizer, batch_size: int):
        """The model and optimizer to fit with (here: unchanged; `DeepSpeedSplit` wraps them in its engine)."""
        return model, optimizer

    def backward(self, loss: torch.Tensor, params: list[torch.Tensor]) -> None:
        """Backward of this process's share, then the gradients of `params` summed over processes (a process
        whose slice was empty contributes zeros)."""
        if loss.requires_grad:
            loss.backward()
        if self.processes == 1:
            return
        from accelerate.utils import reduce

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="sum")  # one collective per step
        for p, g in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = g.view_as(p).to(p.dtype)

    def total(self, count: int) -> int:
        """A count summed over processes."""
        if self.processes == 1:
            return count
        from accelerate.utils import reduce

        return int(reduce(torch.tensor([count], device=self.state.device), reduction="sum").item())

    @property
    def is_main_process(self) -> bool:
        return self.processes == 1 or self.state.is_main_process


ONE_PROCESS = Split()


def is_deepspeed(state) -> bool:
    """Whether `state` (an `Accelerator` or `PartialState`) runs under DeepSpeed."""
    from accelerate.utils import DistributedType

    return getattr(state, "distributed_type", None) == DistributedType.DEEPSPEED


class DeepSpeedSplit(Split):
    """Data-parallel fitting through a DeepSpeed engine (`accelerator.prepare` of the model and the optimizer):
    under ZeRO-3 every parameter, the scores included, is partitioned over the processes and gathered one layer
    at a time while it runs, so no process holds the whole model or all of the mask's float32 scores.

    The steps are those of `Split` (a contiguous slice of each step's rows, gradients summed) with what
    DeepSpeed needs: the engine averages the gradients over processes, so each share is multiplied by the
    number of processes; and ZeRO-3 gathers a layer's parameters with a collective every time the layer runs,
    so every process must run the same modules the same number of times. Hence `row_losses` runs exactly one
    forward pass per call, also on an empty slice (`lockstep_losses`, entered by the fitting loop), and the
    stopping check runs on all rows on every process (`splits_checks` is False). The world is read from
    `torch.distributed` (accelerate reports one process for DeepSpeed on CPU). The check computes in the model's
    own dtype: partitioned parameters cannot be upcast in place (`check_fp32` is False)."""

    splits_checks = False
    check_fp32 = False

    def __init__(self, accelerator):
        import torch.distributed as dist

        super().__init__(accelerator)
        self.accelerator = accelerator
        self.processes = dist.get_world_size() if dist.is_initialized() else 1
        self.rank = dist.get_rank() if dist.is_initialized() else 0

    def prepare(self, model, optimizer, batch_size: int):
        """The DeepSpeed engine around `model` and `optimizer` (the model's parameters are partitioned from here
        on). "auto" values of the DeepSpeed config are filled for this fit: the micro batch is this process's
        share of `batch_size`, and gradient clipping is off (the one-process fit does not clip)."""
        plugin = self.accelerator.state.deepspeed_plugin
        config = plugin.deepspeed_config
        if "optimizer" in config or "scheduler" in config:
            raise ValueError("the DeepSpeed config names an optimizer or scheduler; allowed: none (unlearning "
                             "fits with the method's own SGD, as in one process)")
        if plugin.is_auto("train_micro_batch_size_per_gpu") or "train_micro_batch_size_per_gpu" not in config:
            config["train_micro_batch_size_per_gpu"] = max(1, -(-batch_size // self.processes))
        for key in ("train_batch_size", "gradient_accumulation_steps"):
            if config.get(key) == "auto":
                config.pop(key)
        if config.get("gradient_clipping", "auto") == "auto":
            config["gradient_clipping"] = 0.0
        engine, optimizer = self.accelerator.prepare(model, optimizer)
        return engine, optimizer

    def part(self, index: torch.Tensor) -> torch.Tensor:
        return index.tensor_split(self.processes)[self.rank]

    def mean(self, values: torch.Tensor, n: int) -> torch.Tensor:
        return values.sum() / n

    def backward(self, loss: torch.Tensor, params: list[torch.Tensor]) -> None:
        if not loss.requires_grad:
            raise RuntimeError("a step's loss does not reach the model; under DeepSpeed every process must run "
                               "its forward passes (row_losses inside lockstep_losses)")
        self.accelerator.backward(loss * self.processes)  # the engine averages: times N makes it a sum

    def total(self, count: int) -> int:
        import torch.distributed as dist

        if self.processes == 1:
            return count
        t = torch.tensor([count], dtype=torch.long, device=self.accelerator.device)
        dist.all_reduce(t)
        return int(t.item())

    @property
    def is_main_process(self) -> bool:
        return self.rank == 0
