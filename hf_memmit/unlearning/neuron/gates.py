"""Mask training shared by Slim and Hard Concrete: one trainable gate per unit, trained with Adam to lower the
forget loss under a sparsity term."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ...utils import check_bool, check_int, check_positive, check_range, device_of
from ..data import Rows, index_batches, n_batches
from .config import NeuronMethodConfig
from .rows import suffix_losses
from .units import Units, unit_patch, unscored


@dataclass
class GateTrainingConfig(NeuronMethodConfig):
    """Fields Slim and Hard Concrete share (see their configs)."""

    lr: float = field(default=0.1, metadata={"help": "Adam learning rate on the per-unit parameters, > 0."})
    epochs: int = field(default=10, metadata={"help": "Passes over the forget rows (per row when per_sequence)."})
    stop_loss: float = field(default=0.1, metadata={"help": "Stop once the sparsity term is below this, >= 0."})
    check_every: int = field(default=10, metadata={"help": "Steps between early-stop checks."})
    per_sequence: bool = field(default=False, metadata={"help": "Train one mask per row, average (MemPi)."})

    def __post_init__(self):
        super().__post_init__()
        check_positive("lr", self.lr)
        check_int("epochs", self.epochs, 1)
        check_range("stop_loss", self.stop_loss, 0.0, float("inf"), high_open=True)
        check_int("check_every", self.check_every, 1)
        check_bool("per_sequence", self.per_sequence)


@dataclass
class Gates:
    """How a mask-training method parameterises its units. `gate(p)` maps parameters (any leading shape,
    last dim d_ff) to the factor multiplying the activations; `penalty(p)` is the sparsity term, a mean over
    the last two dims (blocks, units); `score(p)` the final attribution."""

    init: float
    lam: float
    gate: Callable[[torch.Tensor], torch.Tensor]
    penalty: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor]


def train_gates(model, config: GateTrainingConfig, forget: Rows, units: Units, gates: Gates, *,
                progress: bool) -> torch.Tensor:
    """Adam on one parameter per trained unit (blocks of `units.scored`) to minimise
    L(forget rows) + lam * penalty, stopping early once penalty < stop_loss (checked every `check_every` steps,
    before the step, as MemPi). Shared mode: one mask for the whole forget set, `epochs` passes in batches.
    Per-sequence mode: every row trains its own mask for `epochs` steps on itself alone (MemPi's semantics),
    `batch_size` rows side by side; a row that meets the stop rule is frozen from then on, exactly as if it had
    stopped alone. Returns the scores [n_layer, d_ff] (per-sequence: averaged over rows)."""
    rows = units.scored(config)
    device = device_of(model)
    position = {row: i for i, row in enumerate(rows)}
    state: dict = {}

    def patch(row, x):
        if row not in position:
            return None
        gate = gates.gate(state["params"][..., position[row], :])  # [d_ff] shared or [B, d_ff] per row
        return x * (gate[:, None, :] if gate.dim() == 2 else gate).to(x.dtype)

    total = torch.zeros(len(rows), units.d_ff, dtype=torch.float64)
    if config.per_sequence:
        groups = list(index_batches(len(forget), config.batch_size))
        steps_per_group = config.epochs
    else:
        groups = [torch.arange(len(forget))]
        steps_per_group = config.epochs * n_batches(len(forget), config.batch_size)
    with unit_patch(units, patch), torch.enable_grad(), \
            tqdm(total=len(groups) * steps_per_group, desc=config.method, disable=not progress) as bar:
        for group in groups:
            shape = (len(group), len(rows), units.d_ff) if config.per_sequence else (len(rows), units.d_ff)
            params = torch.full(shape, gates.init, device=device, requires_grad=True)
            state["params"] = params
            optimizer = torch.optim.Adam([params], lr=config.lr)
            stopped = torch.zeros(len(group) if config.per_sequence else 1, dtype=torch.bool, device=device)
            frozen = params.detach().clone()
            if config.per_sequence:
                batches = (group for _ in range(config.epochs))
            else:
                batches = (i for _ in range(config.epochs) for i in index_batches(len(forget), config.batch_size))
            for step, index in enumerate(batches):
                input_ids, mask = forget.batch(index)
                losses = suffix_losses(model, input_ids, mask, config.prefix_len)
                penalty = gates.penalty(params)  # [B] per row or a scalar
                if step % config.check_every == 0:
                    newly = (penalty.detach().reshape(-1) < config.stop_loss) & ~stopped
                    if config.per_sequence:
                        frozen[newly] = params.detach()[newly]
                    stopped |= newly
                    if stopped.all():
                        bar.update(steps_per_group - step)
                        break
                if config.per_sequence:
                    loss = (losses + gates.lam * penalty)[~stopped].sum()
                else:
                    loss = losses.mean() + gates.lam * penalty
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if config.per_sequence and stopped.any():
                    with torch.no_grad():
                        params[stopped] = frozen[stopped]
                bar.set_postfix(loss=f"{losses.detach().mean().item():.4f}",
                                sparsity_term=f"{penalty.detach().mean().item():.4f}")
                bar.update(1)
            with torch.no_grad():
                final = gates.score(params.detach()).double().cpu()
                total += final.sum(dim=0) if config.per_sequence else final * len(forget)
    scores = unscored(units)
    scores[rows] = (total / len(forget)).float()
    return scores
