"""NPO, negative preference optimization (Zhang, Lin, Bai and Mei, 2024, "Negative preference optimization: from
catastrophic collapse to effective unlearning", Section 3): gradient ascent's loss bounded by a preference-style
log-sigmoid against a reference model, plus a retain term (their NPO+RT), here in a LoRA adapter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ...utils import check_range
from ..data import epoch_batches, index_batches, row_losses
from ..parallel import ONE_PROCESS, Split
from ..registry import register_method
from .config import RetainTermConfig
from .train import retain_term, train_adapter


@dataclass
class NPOConfig(RetainTermConfig):
    """NPO: with log r_i = log pi(y_i) - log pi_ref(y_i) the log-likelihood ratio of forget row i under the
    adapted model and the reference (the same base with the adapter disabled: no second copy of the weights),

        loss = mean_i -(2 / beta) * log sigmoid(-beta * log r_i) + retain_weight * mean CE(retain batch).

    log pi(y) sums the row's next-token log-probabilities. As beta -> 0 the forget term becomes gradient
    ascent; unlike it, its gradient fades once a row is unlikely, which slows the collapse. The reference
    log-likelihoods are computed once, before fitting. Needs a retain set (retain_weight 0 gives plain NPO but
    still takes one).

    Args:
        beta: inverse temperature (> 0; the paper uses 0.1 on TOFU).
        retain_weight: weight of the retain CE term (>= 0; NPO+RT uses 1.0).
    """

    method: str = "npo"
    beta: float = field(default=0.1, metadata={"help": "Inverse temperature beta, > 0."})

    def __post_init__(self):
        super().__post_init__()
        check_range("beta", self.beta, 0.0, float("inf"), low_open=True, high_open=True)


def row_log_likelihoods(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """log pi(row) [B]: the sum of the row's next-token log-probabilities (positions with mask 0 left out)."""
    mean_ce = row_losses(model, input_ids, attention_mask)
    if attention_mask is None:
        counts = torch.full_like(mean_ce, input_ids.shape[1] - 1)
    else:
        counts = attention_mask[:, 1:].sum(dim=1).to(mean_ce)
    return -mean_ce * counts


@torch.no_grad()
def reference_log_likelihoods(model, rows, batch_size: int, progress: bool) -> torch.Tensor:
    """log pi_ref of every row, with the adapter disabled (the base model)."""
    out = []
    with model.disable_adapter():
        for index in tqdm(list(index_batches(len(rows), batch_size)), desc="reference", disable=not progress):
            out.append(row_log_likelihoods(model, *rows.batch(index)).float().cpu())
    return torch.cat(out)


def npo_losses(log_ratio: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO's loss of each row, -(2 / beta) * log sigmoid(-beta * log_ratio); the method takes their mean."""
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio)


def fit_npo(model, config: NPOConfig, forget, retain, *, adapter_name: str, progress: bool,
            stop: Callable[[int], bool] | None = None, split: Split = ONE_PROCESS) -> None:
    reference = reference_log_likelihoods(model, forget, config.batch_size, progress and split.is_main_process)
    generator = torch.Generator().manual_seed(config.seed)
    steps, n_steps = epoch_batches(config, len(forget), generator)
    retain_ce = retain_term(model, retain, config, generator, split)

    def loss_of(index):
        part = split.part(index)
        log_ratio = row_log_likelihoods(model, *forget.batch(part)) - reference[part].to(forget.input_ids.device)
        loss = split.mean(npo_losses(log_ratio.float(), config.beta), len(index))
        return loss + config.retain_weight * retain_ce() if config.retain_weight else loss

    train_adapter(model, config, steps, n_steps, loss_of, progress, stop, split)


register_method(NPOConfig, fit_npo, needs_retain=True, data_parallel=True)
