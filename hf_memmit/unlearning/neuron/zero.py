"""Zero-Out (MemPi `fast_zero_out_vector`, TinyMem `zero`): a unit's score is how much the forget loss rises
when that unit alone is zeroed at every position."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...utils import check_int, device_of
from ..data import Rows, index_batches
from ..registry import register_method
from .config import NeuronMethodConfig
from .rows import suffix_losses
from .scores import fit_with_scores
from .units import Units, unit_patch, unscored


@dataclass
class ZeroConfig(NeuronMethodConfig):
    """Zero-Out: s[l, i] = L(forget rows with unit i of block l set to 0 at all positions) - L(forget rows),
    where L is the mean over rows of each row's mean next-token cross-entropy (after `prefix_len`). Exact:
    one forward pass per unit over the forget set, batched as MemPi does by running copies of the rows side
    by side, copy j ablating unit j. Averaging the per-row increases (MemPi scores one sequence at a time) gives
    the same number, so there is no per-sequence mode. No hyperparameters besides the batching.

    Args:
        ratio, selection, skip_first_layer, prefix_len, batch_size: see `NeuronMethodConfig`.
        units_per_pass: units ablated side by side in one forward pass (MemPi's d_ff / n_batches); a pass runs
            batch_size * units_per_pass rows (default 8 * 8 = 64, the library's usual batch; mind the LM head's
            memory with large vocabularies). Memory only: the scores do not depend on it.
    Cost: n_layer * d_ff forward passes over the forget set (no backward). Uses only the forget set.
    """

    method: str = "zero"
    units_per_pass: int = field(default=8, metadata={"help": "Units ablated side by side per forward pass."})
    batch_size: int = field(default=8, metadata={"help": "Forget rows per forward pass (times units_per_pass)."})

    def __post_init__(self):
        super().__post_init__()
        check_int("units_per_pass", self.units_per_pass, 1)


@torch.no_grad()
def zero_scores(model, config: ZeroConfig, forget: Rows, units: Units, *, progress: bool = True) -> torch.Tensor:
    rows = units.scored(config)
    d_ff, n = units.d_ff, len(forget)
    device = device_of(model)
    ablated = torch.zeros(len(units.blocks), d_ff, dtype=torch.float64)
    base = torch.zeros((), dtype=torch.float64)
    state = {"row": None, "keep": None}  # the block being ablated and the [copies, d_ff] keep-vector of a pass

    def patch(row, x):
        if row != state["row"]:
            return None
        keep = state["keep"]
        copies = keep.shape[0]
        return (x.reshape(copies, -1, *x.shape[1:]) * keep[:, None, None, :].to(x.dtype)).reshape(x.shape)

    n_steps = -(-len(forget) // config.batch_size) * len(rows) * -(-d_ff // config.units_per_pass)
    with unit_patch(units, patch), tqdm(total=n_steps, desc=config.method, disable=not progress) as bar:
        for index in index_batches(n, config.batch_size):
            input_ids, mask = forget.batch(index)
            base += suffix_losses(model, input_ids, mask, config.prefix_len).double().sum().cpu()
            for row in rows:
                state["row"] = row
                for start in range(0, d_ff, config.units_per_pass):
                    chunk = torch.arange(start, min(start + config.units_per_pass, d_ff))
                    state["keep"] = 1 - F.one_hot(chunk, d_ff).to(device)
                    copies = len(chunk)
                    losses = suffix_losses(model, input_ids.repeat(copies, 1),
                                           None if mask is None else mask.repeat(copies, 1), config.prefix_len)
                    ablated[row, chunk] += losses.double().view(copies, -1).sum(dim=1).cpu()
                    bar.update(1)
            state["row"] = None
    scores = unscored(units)
    scores[rows] = ((ablated[rows] - base) / n).float()
    return scores


def fit_zero(model, config: ZeroConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    fit_with_scores(zero_scores, model, config, forget, adapter_name=adapter_name, progress=progress)


register_method(ZeroConfig, fit_zero, score=zero_scores)
