"""Spectral-norm regularization (Yoshida & Miyato 2017) as a `Trainer` subclass.

Loss = task loss + (weight / 2) * sum over weight matrices of sigma(W)^2 (the paper) or sigma(W) (TinyMem's
released code), sigma being the largest singular value, estimated by power iteration with vectors kept across
steps (one iteration per optimizer step, more at the first). The vectors are saved in every checkpoint, so a
resumed run continues with the same estimates. Matrices are `nn.Linear` (out x in) and GPT-2 `Conv1D` (in x out)
layers, read in (out x in) orientation; with `per_head=True` attention projections are split into one block per
head (q, k, v separately), as TinyMem does. The output embedding (LM head) is never penalized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Trainer
from transformers.pytorch_utils import Conv1D

from ..utils import check_choice
from .registry import register_regularizer
from .state import CheckpointedStateMixin, task_loss_for_step

PENALTIES = ("sigma_sq", "sigma")


@dataclass
class SpectralNormConfig:
    """Args:
        weight: lambda, the penalty's coefficient, in [0, inf). TinyMem's default 0.01 (grid 0.001, 0.01, 0.1).
        penalty: "sigma_sq" (the paper: lambda/2 * sigma^2, gradient lambda * sigma * u v^T) or "sigma"
            (TinyMem's code: lambda/2 * sigma, gradient lambda/2 * u v^T).
        per_head: split attention projections into per-head blocks, each with its own sigma (TinyMem).
        n_power_iterations: power iterations per optimizer step (>= 1; the paper uses 1).
        init_power_iterations: iterations from the random start, so sigma is converged at step 0 (>= 1).
        target_modules: module-name suffixes to penalize; None = every Linear/Conv1D except the LM head.
    """

    weight: float = 0.01
    penalty: str = "sigma_sq"
    per_head: bool = False
    n_power_iterations: int = 1
    init_power_iterations: int = 20
    target_modules: tuple[str, ...] | None = None

    def __post_init__(self):
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"weight={self.weight!r} is out of range; allowed: [0, inf)")
        check_choice("penalty", self.penalty, PENALTIES)
        for name in ("n_power_iterations", "init_power_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is out of range; allowed: integers >= 1")
        if self.target_modules is not None:
            self.target_modules = tuple(self.target_modules)


def _head_split(name: str, config) -> tuple[int, int] | None:
    """(axis of the (out x in) matrix, number of blocks) for attention projections, None for other layers.
    GPT-2: c_attn rows are [q | k | v], each n_head blocks; attn c_proj columns are the n_head head outputs.
    Llama family: q/k/v_proj rows per (kv-)head, o_proj columns per head."""
    n_head = getattr(config, "num_attention_heads", None) or getattr(config, "n_head", None)
    n_kv = getattr(config, "num_key_value_heads", None) or n_head
    if name.endswith("attn.c_attn"):
        return 0, 3 * n_head
    if name.endswith("attn.c_proj"):
        return 1, n_head
    if name.endswith("q_proj"):
        return 0, n_head
    if name.endswith(("k_proj", "v_proj")):
        return 0, n_kv
    if name.endswith("o_proj"):
        return 1, n_head
    return None


def spectral_targets(model: nn.Module, config: SpectralNormConfig) -> dict[str, tuple[nn.Module, tuple[int, int] | None]]:
    """name -> (layer, head split or None) for every penalized layer."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Linear, Conv1D)) or module is head:
            continue
        if config.target_modules is not None and not name.endswith(config.target_modules):
            continue
        split = _head_split(name, model.config) if config.per_head else None
        out[name] = (module, split)
    if not out:
        raise ValueError(f"no Linear/Conv1D layer matches target_modules={config.target_modules!r}")
    return out


def _blocks(module: nn.Module, split: tuple[int, int] | None) -> torch.Tensor:
    """The layer's weight as (out x in), cut into (n_blocks, rows, cols); a view, so gradients flow to it."""
    w = module.weight.T if isinstance(module, Conv1D) else module.weight  # Conv1D stores (in x out)
    if split is None:
        return w.unsqueeze(0)
    axis, n = split
    rows, cols = w.shape
    if axis == 0:
        return w.reshape(n, rows // n, cols)
    return w.reshape(rows, n, cols // n).permute(1, 0, 2)


class SpectralNormRegularizer:
    """Power-iteration estimates of the top singular value of each target block, and the penalty from them."""

    def __init__(self, model: nn.Module, config: SpectralNormConfig, seed: int = 0):
        self.config, self.seed = config, seed
        self.targets = spectral_targets(model, config)
        self.u: dict[str, torch.Tensor] = {}
        self.v: dict[str, torch.Tensor] = {}
        self.last_step = -1  # the optimizer step whose iteration was done (-1: none yet)

    def blocks(self) -> dict[str, torch.Tensor]:
        return {name: _blocks(module, split) for name, (module, split) in self.targets.items()}

    @torch.no_grad()
    def power_iteration(self, n: int) -> None:
        """v <- normalize(W^T u), u <- normalize(W v), `n` times, from random u on the first call."""
        blocks = self.blocks()
        if not self.u:
            gen = torch.Generator().manual_seed(self.seed)
            for name, w in blocks.items():
                u = torch.randn(w.shape[0], w.shape[1], generator=gen, dtype=torch.float32)
                self.u[name] = F.normalize(u, dim=1).to(w.device)
        for name, w in blocks.items():
            w, u = w.float(), self.u[name]
            for _ in range(n):
                v = F.normalize(torch.einsum("brc,br->bc", w, u), dim=1)
                u = F.normalize(torch.einsum("brc,bc->br", w, v), dim=1)
            self.u[name], self.v[name] = u, v

    def step(self, global_step: int) -> None:
        """Iterate once per optimizer step (not per gradient-accumulation micro-batch, so accumulation matches a
        larger batch); the first call starts from random vectors and iterates `init_power_iterations` times."""
        if global_step == self.last_step:
            return
        first = not self.u
        self.power_iteration(self.config.init_power_iterations if first else self.config.n_power_iterations)
        self.last_step = global_step

    def sigmas(self) -> dict[str, torch.Tensor]:
        """sigma = u^T W v per block, differentiable in W (u, v are constants)."""
        if not self.u:
            self.power_iteration(self.config.init_power_iterations)
        return {name: torch.einsum("br,brc,bc->b", self.u[name], w.float(), self.v[name])
                for name, w in self.blocks().items()}

    def penalty(self) -> torch.Tensor:
        sig = torch.cat(list(self.sigmas().values()))
        total = (sig ** 2).sum() if self.config.penalty == "sigma_sq" else sig.sum()
        return 0.5 * self.config.weight * total

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {"last_step": torch.tensor(self.last_step)}
        for name in self.u:
            out[f"{name}.u"], out[f"{name}.v"] = self.u[name], self.v[name]
        return out

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        blocks = self.blocks()
        self.last_step = int(tensors["last_step"])
        if not any(k.endswith(".u") for k in tensors):  # saved before the first step: nothing estimated yet
            self.u, self.v = {}, {}
            return
        missing = [n for n in blocks if f"{n}.u" not in tensors]
        if missing:
            raise ValueError(f"spectral-norm state lacks vectors for {missing[:3]}: saved with other target modules")
        self.u = {n: tensors[f"{n}.u"].to(w.device) for n, w in blocks.items()}
        self.v = {n: tensors[f"{n}.v"].to(w.device) for n, w in blocks.items()}


class SpectralNormTrainer(CheckpointedStateMixin, Trainer):
    """`Trainer` adding the spectral-norm penalty to the training loss (not to evaluation losses).

    Pass `method_config=SpectralNormConfig(...)`. The penalty is added once per optimizer step (a share of
    1/accumulation steps per micro-batch), so gradient accumulation equals a larger batch."""

    loss_is_scaled_for_ga = True  # compute_loss scales both the task loss and the penalty itself
    state_file = "spectral_norm_state.safetensors"

    def __init__(self, *args, method_config: SpectralNormConfig | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.method_config = method_config or SpectralNormConfig()
        self.spectral = SpectralNormRegularizer(self.model, self.method_config, seed=self.args.seed)
        self._penalty_sum, self._penalty_count = 0.0, 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        if model.training:
            loss = task_loss_for_step(self, loss, num_items_in_batch)
            self.spectral.step(self.state.global_step)
            penalty = self.spectral.penalty()
            loss = loss + penalty / self.current_gradient_accumulation_steps
            self._penalty_sum = self._penalty_sum + penalty.detach() / self.current_gradient_accumulation_steps
            self._penalty_count += 1 / self.current_gradient_accumulation_steps
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._penalty_count and "loss" in logs:  # the mean penalty since the last training log
            logs["spectral_penalty"] = float(self._penalty_sum) / self._penalty_count
            self._penalty_sum, self._penalty_count = 0.0, 0.0
        super().log(logs, start_time)

    def regularizer_state(self) -> dict[str, torch.Tensor]:
        return self.spectral.state_dict()

    def load_regularizer_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.spectral.load_state_dict(tensors)


register_regularizer("spectral_norm", SpectralNormConfig, SpectralNormTrainer)
