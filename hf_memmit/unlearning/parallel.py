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
    """This process's part of the work. `state`: an `accelerate.Accelerator` or `PartialState`; None: one process."""

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
