"""What the neuron-level methods share: the common config fields, the MLP units of a model, the activation
patch every method scores through, suffix losses, and the top-k selection that turns scores into a mask.

A *neuron* (unit) is one input dimension of an MLP's down projection: GPT-2 `mlp.c_proj` (the `mlp.act`
output), Llama-family `mlp.down_proj` (act(gate) * up), GPT-NeoX `mlp.dense_4h_to_h`, ... (any layout of
`hf_memmit.models.mlp.find_mlps`). Every method scores the forget rows into a matrix
`[n_layer, d_ff]` (one row per masked block, in block order; higher = more responsible for the forget rows),
and the highest-scoring units are dropped: the neuron-mask adapter multiplies them by 0 at every position,
which is the same as zeroing their slice of the down-projection weight (the bias is untouched).
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from peft import PeftModel
from torch import nn
from tqdm.auto import tqdm

from ...models.mlp import find_mlps, in_features, is_transposed
from ...tuners import NeuronMaskConfig
from ...tuners.common import layer_index
from ...utils import check_choice, check_range
from ..data import Rows, as_rows, index_batches, n_batches, row_losses
from ..registry import get_method
from ..weight.common import check_int

SELECTIONS = ("per_layer", "global")


@dataclass
class NeuronMethodConfig(NeuronMaskConfig):
    """Fields of every neuron-level method.

    Args:
        ratio: fraction of MLP units dropped. With `selection="per_layer"` (default, MemPi and TinyMem) every
            masked block loses floor(ratio * d_ff) units, its highest-scoring ones; with `"global"` floor(ratio *
            d_ff * number of masked blocks) units go wherever the scores are highest. In (0, 1). A ratio that
            selects no unit (ratio * d_ff < 1 per layer) is refused before any scoring: TinyMem's grid values
            1e-5, 1e-4 and 1e-3 select nothing at d_ff 512 and were silent no-ops there.
        selection: "per_layer" or "global" (MemPi's unused `get_global_scores`, flagged as an extension).
        skip_first_layer: never drop units of block 0 (MemPi's DEL setting `start_mask_layer=1`; its Slim/HC
            then also leave block 0 untrained). Default False: TinyMem drops in every layer.
        prefix_len: the first `prefix_len` tokens of a row are context only: losses, activations and the IG
            target cover the predictions of tokens prefix_len .. T-1, made at positions prefix_len-1 .. T-2
            (MemPi's P). Default 1: every next-token prediction of the row. TinyMem used the whole row for
            Zero/Slim/HC and its prompt length for Act/IG; set e.g. 50 to score only a memorized suffix.
        batch_size: forget rows per forward pass.
        target_modules etc.: as `NeuronMaskConfig` (default: the model's MLP down projections).
    """

    ratio: float = field(default=0.01, metadata={"help": "Fraction of MLP units to drop, in (0, 1)."})
    selection: str = field(default="per_layer", metadata={"help": "'per_layer' top-k or 'global' top-k."})
    skip_first_layer: bool = field(default=False, metadata={"help": "Never drop units of block 0."})
    prefix_len: int = field(default=1, metadata={"help": "Leading context tokens whose prediction is not scored."})
    batch_size: int = field(default=64, metadata={"help": "Forget rows per forward pass."})

    def __post_init__(self):
        super().__post_init__()
        check_range("ratio", self.ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_choice("selection", self.selection, SELECTIONS)
        check_bool("skip_first_layer", self.skip_first_layer)
        check_int("prefix_len", self.prefix_len, 1)
        check_int("batch_size", self.batch_size, 1)
        if self.trainable_coefficients:
            raise ValueError(f"trainable_coefficients={self.trainable_coefficients!r} does not fit "
                             f"{type(self).__name__}; allowed: False (a fitted neuron mask keeps no coefficients)")


def check_bool(name: str, value) -> None:
    if type(value) is not bool:
        raise ValueError(f"{name}={value!r} is not supported; allowed: True, False")


def check_positive(name: str, value) -> None:
    check_range(name, value, 0.0, float("inf"), low_open=True, high_open=True)


# ---- the units of a model ----------------------------------------------------------------------------------------

@dataclass
class Units:
    """The MLP down projections of a model in block order: `blocks[i]` is the transformer block index of
    `modules[i]`; all have `d_ff` input units."""

    blocks: list[int]
    modules: list[nn.Module]
    d_ff: int

    def scored(self, config: NeuronMethodConfig) -> list[int]:
        """Rows (positions in `blocks`) that get scores and can be dropped."""
        return [i for i, b in enumerate(self.blocks) if not (config.skip_first_layer and b == 0)]


def config_d_ff(config) -> int | None:
    """d_ff from a transformers config: `intermediate_size` (Llama family), `n_inner` or 4 * n_embd (GPT-2),
    `ffn_dim` (OPT-like)."""
    for key in ("intermediate_size", "n_inner", "ffn_dim"):
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if getattr(config, "model_type", None) == "gpt2":
        return 4 * config.n_embd
    return None


def find_units(model, adapter_name: str | None = None) -> Units:
    """The down projections of `model`: the layers of neuron-mask adapter `adapter_name` of a PeftModel, or,
    for a plain model, every block's MLP down projection (`hf_memmit.models.mlp.find_mlps`)."""
    if adapter_name is not None and isinstance(model, PeftModel):
        named = [(layer_index(n), m) for n, m in model.base_model.down_projections(adapter_name)]
    else:
        base = model.get_base_model() if isinstance(model, PeftModel) else model
        named = [(block.layer, block.down) for block in find_mlps(base)]
    if not named:
        raise ValueError("the model has no MLP down projection to score; allowed: a causal LM with an MLP in "
                         "every block (GPT-2, Llama family, GPT-NeoX, ...)")
    sizes = sorted({in_features(m) for _, m in named})
    if len(sizes) != 1:
        raise ValueError(f"the masked down projections have {sizes} input units; allowed: one d_ff for every block")
    d_ff = sizes[0]
    base_config = getattr(model.get_base_model() if isinstance(model, PeftModel) else model, "config", None)
    expected = config_d_ff(base_config) if base_config is not None else None
    if expected is not None and expected != d_ff:
        raise ValueError(f"the model config says d_ff={expected} but the down projections have {d_ff} input "
                         "units; allowed: target_modules naming the MLP down projections")
    return Units([b for b, _ in named], [m for _, m in named], d_ff)


def down_weight(module: nn.Module) -> tuple[torch.Tensor, bool]:
    """The down projection's weight and whether it is a GPT-2 Conv1D ((in, out) layout; nn.Linear is (out, in))."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    return base.weight, is_transposed(base)


def unit_norms(module: nn.Module) -> torch.Tensor:
    """||W_out[:, i]||_2 per unit i: the norm of the vector unit i writes into the residual stream."""
    weight, conv = down_weight(module)
    return weight.detach().float().norm(dim=1 if conv else 0)


@contextmanager
def unit_patch(units: Units, patch: Callable[[int, torch.Tensor], torch.Tensor | None]):
    """For the duration, every down projection calls `patch(row, x)` on its input x [B, T, d_ff] (row = position
    in `units.blocks`); a returned tensor replaces x. This is MemPi's `Patch` on `mlp.act`, placed at the
    down projection's input so that gated MLPs work too."""

    def hook(row, module, args):
        out = patch(row, args[0])
        return None if out is None else (out, *args[1:])

    handles = [m.register_forward_pre_hook(lambda mod, args, row=row: hook(row, mod, args))
               for row, m in enumerate(units.modules)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ---- rows, positions, losses -------------------------------------------------------------------------------------

def causal_lm(model) -> nn.Module:
    return model.get_base_model() if isinstance(model, PeftModel) else model


def device_of(model) -> torch.device:
    return next(model.parameters()).device


def target_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, prefix_len: int) -> torch.Tensor:
    """Bool [B, T-1]: position t is scored iff it predicts a real token t+1 >= prefix_len."""
    valid = torch.zeros(input_ids.shape[0], input_ids.shape[1] - 1, dtype=torch.bool, device=input_ids.device)
    valid[:, prefix_len - 1:] = True
    if attention_mask is not None:
        valid &= attention_mask[:, 1:].bool() & attention_mask[:, :-1].bool()
    return valid


def check_rows(rows: Rows, prefix_len: int) -> None:
    length = rows.input_ids.shape[1]
    if prefix_len >= length:
        raise ValueError(f"prefix_len={prefix_len} leaves no token to score in rows of {length} tokens; allowed: "
                         f"1 <= prefix_len <= {length - 1}")
    counts = target_mask(rows.input_ids, rows.attention_mask, prefix_len).sum(dim=1)
    if (counts == 0).any():
        bad = int((counts == 0).nonzero()[0])
        raise ValueError(f"forget row {bad} has no scored token after prefix_len={prefix_len} (padding); allowed: "
                         "rows with at least one real token after the prefix")


def last_logits(model, n: int, **inputs) -> torch.Tensor:
    """The logits of the last `n` positions [B, n, V]. Asks the model for only those (`logits_to_keep`) when its
    forward accepts it: the LM head over a large vocabulary dominates memory otherwise."""
    lm = causal_lm(model)
    if "logits_to_keep" in inspect.signature(lm.forward).parameters:
        inputs["logits_to_keep"] = n
    return lm(**inputs, use_cache=False).logits[:, -n:]


def suffix_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                  prefix_len: int) -> torch.Tensor:
    """Mean next-token cross-entropy of each row [B] over the scored positions (see `target_mask`): the shared
    memory-bounded `row_losses` on the causal LM (a PeftModel's active adapters included)."""
    device = device_of(model)
    input_ids = input_ids.to(device)
    attention_mask = None if attention_mask is None else attention_mask.to(device)
    valid = target_mask(input_ids, attention_mask, prefix_len)
    return row_losses(causal_lm(model), input_ids, attention_mask, valid=valid)


def row_batches(rows: Rows, batch_size: int, desc: str, progress: bool) -> Iterator[torch.Tensor]:
    """Row indices of one pass over the forget rows, with a tqdm bar."""
    yield from tqdm(index_batches(len(rows), batch_size), total=n_batches(len(rows), batch_size), desc=desc,
                    disable=not progress)


# ---- selection ---------------------------------------------------------------------------------------------------

def n_dropped(config: NeuronMethodConfig, units: Units) -> int:
    """Units dropped per scored block (per_layer) or in total (global); refuses a selection of zero."""
    rows = units.scored(config)
    if not rows:
        raise ValueError("skip_first_layer=True leaves no block to mask (the only masked block is block 0); "
                         "allowed: skip_first_layer=False or a model with more blocks")
    if config.selection == "per_layer":
        k, what = int(config.ratio * units.d_ff), f"floor({config.ratio} * d_ff {units.d_ff}) = {{k}} units per layer"
        minimum = 1 / units.d_ff
    else:
        total = units.d_ff * len(rows)
        k, what = int(config.ratio * total), f"floor({config.ratio} * {total} scored units) = {{k}} units in total"
        minimum = 1 / total
    if k == 0:
        raise ValueError(f"{config.method}: ratio={config.ratio} selects {what.format(k=k)}, so the adapter would "
                         f"change nothing; allowed: ratio >= {minimum:.3g} (1 / {round(1 / minimum)})")
    return k


def top_units(scores: torch.Tensor, config: NeuronMethodConfig, units: Units) -> torch.Tensor:
    """Keep-mask [n_layer, d_ff] (bool) dropping the highest scores (ties: the lower unit index first)."""
    k = n_dropped(config, units)
    rows = units.scored(config)
    keep = torch.ones(len(units.blocks), units.d_ff, dtype=torch.bool)
    sub = scores[rows].float().cpu()
    if not torch.isfinite(sub).all():
        raise ValueError(f"{config.method}: the neuron scores contain non-finite values; the forget rows or the "
                         "hyperparameters (lr, lambda) make the scoring diverge")
    groups = sub if config.selection == "per_layer" else sub.reshape(1, -1)
    ordered, order = torch.sort(groups, dim=1, descending=True, stable=True)
    drop = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order[:, :k], True).view(sub.shape)
    _warn_on_boundary_ties(config, ordered, k, [units.blocks[r] for r in rows])
    keep[rows] = ~drop
    return keep


def _warn_on_boundary_ties(config: NeuronMethodConfig, ordered: torch.Tensor, k: int, blocks: list[int]) -> None:
    """Say so when the k-th and (k+1)-th scores of a selection group are equal up to float noise (1e-6 of the
    group's largest |score|): which tied units go is then decided by unit index or rounding, not by the method."""
    if k >= ordered.shape[1]:
        return
    tol = 1e-6 * ordered.abs().amax(dim=1)
    tied = ((ordered[:, k - 1] - ordered[:, k]) <= tol).nonzero().squeeze(1).tolist()
    if not tied:
        return
    g = tied[0]
    value = ordered[g, k - 1]
    close = (ordered[g] - value).abs() <= tol[g]
    n_tied, slots = int(close.sum()), int(close[:k].sum())
    where = f"block {blocks[g]}" if config.selection == "per_layer" else "the global ranking"
    warnings.warn(
        f"{config.method}: the top-{k} cut falls inside a tie in {len(tied)} of {ordered.shape[0]} selection "
        f"group(s) (e.g. {where}: {n_tied} units share the score {float(value):.6g} for {slots} slots); "
        "which of them are dropped is arbitrary. Widely tied scores carry no ranking there (Slim/HC: every "
        "gate moved alike, e.g. lambda too large for the model; lower lambda or lr*epochs)",
        stacklevel=3,
    )


# ---- entry points ------------------------------------------------------------------------------------------------

ScoreFn = Callable[..., torch.Tensor]


def unscored(units: Units) -> torch.Tensor:
    """The score matrix before scoring: NaN marks blocks a method does not score (skip_first_layer)."""
    return torch.full((len(units.blocks), units.d_ff), float("nan"))


def fit_with_scores(score_fn: ScoreFn, model, config: NeuronMethodConfig, forget: Rows, *, adapter_name: str,
                    progress: bool) -> torch.Tensor:
    """Score the forget rows with `score_fn`, then set the adapter's keep-mask to drop the top units. Returns
    the scores."""
    units = find_units(model, adapter_name)
    n_dropped(config, units)  # refuse a no-op selection before spending any compute
    check_rows(forget, config.prefix_len)
    scores = score_fn(model, config, forget, units, progress=progress)
    model.base_model.set_keep_mask(top_units(scores, config, units), adapter_name)
    return scores


def neuron_scores(model, config: NeuronMethodConfig, forget, *, batch_size: int | None = None,
                  progress: bool = True) -> torch.Tensor:
    """Only the attribution step of a neuron-level method: its score matrix [n_layer, d_ff] (float32, on the
    CPU; rows of blocks it does not score are NaN) for the forget rows, without building an adapter.

    `model` is a plain causal LM (GPT-2, Llama family) or a PeftModel (scored as it currently computes, active
    adapters included). The model's weights are never changed; it runs in eval mode during scoring."""
    method = get_method(config)
    if method.score is None:
        raise ValueError(f"method {method.name!r} has no neuron scores; allowed: a neuron-level method config "
                         "(ZeroConfig, ActConfig, SlimConfig, HardConcreteConfig, IntegratedGradientsConfig)")
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=batch_size)
    rows = as_rows(forget, "forget")
    if len(rows) == 0:
        raise ValueError("forget set is empty; allowed: at least one row (the rows to score)")
    check_rows(rows, config.prefix_len)
    units = find_units(model)
    was_training = model.training
    model.eval()
    try:
        return method.score(model, config, rows, units, progress=progress)
    finally:
        model.train(was_training)


# ---- mask training (Slim, Hard Concrete) -------------------------------------------------------------------------

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
