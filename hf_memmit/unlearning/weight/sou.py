"""Second Order Unlearning (SOU; after OBS/oBERT, Kurtic et al. 2022): mask the weights whose removal costs the
forget set the most loss under a block-diagonal empirical Fisher approximation of the Hessian."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ...utils import check_int, check_range
from ..data import row_losses
from ..registry import register_method
from .common import WeightMethodConfig, grad_of, top_masks, warn_if_noop, weight_grads


@dataclass
class SecondOrderUnlearningConfig(WeightMethodConfig):
    """SOU: per targeted tensor, an empirical Fisher F = damping * I + (1/m) sum_j g_j g_j^T, block-diagonal in
    blocks of `block_size` consecutive weights, from m = min(num_grads, forget rows) per-row gradients of the
    forget loss. Saliency (the OBS loss increase of zeroing w) = w^2 / (2 [F^-1]_ww); the most salient weights
    are masked.

    Unlike the reference, every gradient is computed afresh (its gradients accumulated across calls) and only
    the targeted tensors get Fisher blocks. Memory: block_size floats per targeted weight (fp32).

    Args:
        ratio: fraction of the targeted weights masked, counted **per tensor**: every targeted matrix loses
            floor(ratio * its size) weights. In (0, 1); the paper's grid is 1e-5 ... 0.05.
        num_grads: at most this many forget rows (a seeded random choice), one gradient each (paper: 256).
        block_size: Fisher block size (paper: 50). damping: added to the Fisher diagonal (paper: 1e-7).
    Uses only the forget set.
    """

    method: str = "sou"
    ratio: float = field(default=0.01, metadata={"help": "Fraction of each targeted tensor to mask."})
    num_grads: int = field(default=256, metadata={"help": "Max per-row forget gradients for the Fisher."})
    block_size: int = field(default=50, metadata={"help": "Fisher block size."})
    damping: float = field(default=1e-7, metadata={"help": "Fisher diagonal damping, > 0."})

    def __post_init__(self):
        super().__post_init__()
        check_int("num_grads", self.num_grads, 1)
        check_int("block_size", self.block_size, 1)
        check_range("damping", self.damping, 0.0, float("inf"), low_open=True, high_open=True)


def _blocks(t: torch.Tensor, size: int) -> torch.Tensor:
    flat = t.reshape(-1)
    pad = (-flat.numel()) % size
    return torch.nn.functional.pad(flat, (0, pad)).view(-1, size)


def fit_sou(model, config: SecondOrderUnlearningConfig, forget, retain, *, adapter_name: str,
            progress: bool) -> None:
    layers = model.base_model.mask_layers(adapter_name)
    size = config.block_size
    picks = torch.randperm(len(forget), generator=torch.Generator().manual_seed(config.seed))[:config.num_grads]
    fisher, pending = {}, {name: [] for name in layers}

    def flush():
        for name, grads in pending.items():
            g = torch.stack(grads)  # [chunk, blocks, size]
            update = torch.einsum("cbi,cbj->bij", g, g)
            fisher[name] = update if name not in fisher else fisher[name].add_(update)
            grads.clear()

    with weight_grads(layers) as weights:
        for step, i in enumerate(tqdm(picks, desc="sou", disable=not progress)):
            for w in weights:
                w.grad = None
            row_losses(model, *forget.batch(i.view(1))).mean().backward()
            for name, w in zip(layers, weights):
                pending[name].append(_blocks(grad_of(w).detach().float(), size))
            if (step + 1) % 32 == 0 or step == len(picks) - 1:  # outer products in chunks of 32 gradients
                flush()
        saliency = {}
        for name, w in zip(layers, weights):
            f = fisher[name].double() / len(picks)
            f.diagonal(dim1=1, dim2=2).add_(config.damping)
            inv_diag = torch.linalg.inv(f).diagonal(dim1=1, dim2=2).reshape(-1)[: w.numel()]
            saliency[name] = (w.detach().double().reshape(-1) ** 2 / (2 * inv_diag)).view(w.shape)
    model.base_model.set_keep_masks(top_masks(saliency, config.ratio, joint=False), adapter_name)
    warn_if_noop(model, adapter_name, config)


register_method(SecondOrderUnlearningConfig, fit_sou)
