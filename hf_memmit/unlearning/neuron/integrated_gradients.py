"""Integrated Gradients / "knowledge neurons" (MemPi `integrated_gradients` after Dai et al. 2022, TinyMem `ig`):
attribute the probability of each next token to the units of one block at the predicting position."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ...utils import check_bool, check_int, device_of
from ..data import Rows, index_batches
from ..registry import register_method
from .config import NeuronMethodConfig
from .rows import causal_lm, last_logits, target_mask
from .scores import fit_with_scores
from .units import Units, unit_patch, unscored


@dataclass
class IntegratedGradientsConfig(NeuronMethodConfig):
    """IG: for every block l and every scored position t (t = prefix_len-1 .. T-2, predicting token t+1), with
    a = the block's activation vector at t: replace the activation at position t only (earlier positions keep
    theirs) by alpha_k * a for alpha = linspace(0, 1, ig_steps) (baseline 0, both ends included), take the
    gradient of the softmax **probability** of the true token t+1, and form IG_t = a * sum_k grad_k / ig_steps.
    s[l, i] = mean over t of IG_t[i] (signed), then the mean over forget rows. As ig_steps grows, the sum of
    IG_t over units tends to p(a) - p(0) (completeness); ig_steps = 1 is a * grad at the baseline.

    The `ig_steps` argument is honoured (TinyMem's `ig_full_data` silently used 20).

    Args:
        ig_steps: points on the path, >= 1 (MemPi/TinyMem 20; TinyMem grid 1, 10, 20).
        batch_positions: True (default): every (block, position, step) of a row is one extra query token
            that sees the row's clean tokens before it and itself, so one forward pass scores many positions
            exactly (a 4D attention mask and position ids; checked against plain forwards on the first batch,
            falling back with a warning if the model does not honour them). False: MemPi's procedure, one
            forward pass of the truncated rows x_0..x_t per (block, position).
        queries_per_pass: extra query tokens per forward pass (memory only).
        batch_size: forget rows per pass (default 16: a pass holds batch_size * (T + queries_per_pass) tokens).
        ratio, selection, skip_first_layer, prefix_len: see `NeuronMethodConfig`.
    Rows are scored independently and averaged, which is MemPi's one-row-at-a-time result. Cost:
    n_layer * (T - prefix_len) * ig_steps forward+backward token positions per row (batch_positions), or that
    many truncated forward+backward passes (not batched). Uses only the forget set.
    """

    method: str = "ig"
    ig_steps: int = field(default=20, metadata={"help": "Integration steps (points on the path), >= 1."})
    batch_positions: bool = field(default=True, metadata={"help": "Score many positions per pass (exact)."})
    queries_per_pass: int = field(default=256, metadata={"help": "Extra query tokens per forward pass."})
    batch_size: int = field(default=16, metadata={"help": "Forget rows per forward pass."})

    def __post_init__(self):
        super().__post_init__()
        check_int("ig_steps", self.ig_steps, 1)
        check_bool("batch_positions", self.batch_positions)
        check_int("queries_per_pass", self.queries_per_pass, 1)


def _gold_prob(logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1).gather(-1, gold.unsqueeze(-1)).squeeze(-1)


class _Substitution:
    """The hook state of one pass: per block row, which sequence positions get alpha * a (a = the activation
    at `source` positions), and the leaves whose gradients we want."""

    def __init__(self):
        # block row -> (dest positions, source positions, alpha shaped to broadcast against x[:, source])
        self.plan: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.taken: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # row -> (a, v)

    def __call__(self, row, x):
        if row not in self.plan:
            return None
        dest, source, alpha = self.plan[row]
        a = x[:, source].detach()
        v = (alpha.to(a.dtype) * a).requires_grad_(True)
        self.taken[row] = (a, v)
        return x.index_copy(1, dest, v)


def _query_inputs(input_ids, mask, q_pos):
    """Rows followed by one extra token per query: query j repeats token q_pos[j] at position q_pos[j] and
    attends to the row's real tokens before it and to itself; nothing attends to a query."""
    b, t = input_ids.shape
    q = len(q_pos)
    ext = torch.cat([input_ids, input_ids[:, q_pos]], dim=1)
    position_ids = torch.cat([torch.arange(t, device=input_ids.device), q_pos]).expand(b, -1)
    keys = torch.arange(t, device=input_ids.device)
    real = torch.ones(b, t, dtype=torch.bool, device=input_ids.device) if mask is None else mask.bool()
    allowed = torch.zeros(b, t + q, t + q, dtype=torch.bool, device=input_ids.device)
    allowed[:, :t, :t] = (keys[None, :] <= keys[:, None])[None] & real[:, None, :]
    allowed[:, :t, :t] |= torch.eye(t, dtype=torch.bool, device=input_ids.device)  # a padded row sees itself
    allowed[:, t:, :t] = (keys[None, :] < q_pos[:, None])[None] & real[:, None, :]
    allowed[:, t:, t:] = torch.eye(q, dtype=torch.bool, device=input_ids.device)
    return ext, position_ids, allowed


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min).unsqueeze(1)


def _queries_exact(model, input_ids, mask, q_pos, dtype) -> bool:
    """Do the query tokens reproduce the plain forward's logits at their positions (no substitution)?"""
    lm = causal_lm(model)
    with torch.no_grad():
        plain = lm(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, q_pos].float()
        ext, position_ids, allowed = _query_inputs(input_ids, mask, q_pos)
        queried = last_logits(model, len(q_pos), input_ids=ext, attention_mask=_additive(allowed, dtype),
                              position_ids=position_ids).float()
    real = torch.ones_like(plain[..., 0], dtype=torch.bool) if mask is None else mask[:, q_pos].bool()
    tol = (1e-3 if dtype == torch.float32 or dtype == torch.float64 else 5e-2) * max(1.0, float(plain.abs().max()))
    return bool(((plain - queried).abs()[real] <= tol).all())


def _score_queries(model, config, units, rows, input_ids, mask, valid, acc, bar) -> None:
    """acc[b, row] += sum over scored t of a * sum_k grad_k / m, all (row, t, k) as query tokens."""
    device = input_ids.device
    t_len = input_ids.shape[1]
    m = config.ig_steps
    alphas = torch.linspace(0, 1, m, device=device)
    positions = torch.arange(config.prefix_len - 1, t_len - 1, device=device)
    q_row = torch.tensor(rows, device=device).repeat_interleave(len(positions) * m)
    q_pos = positions.repeat_interleave(m).repeat(len(rows))
    q_alpha = alphas.repeat(len(positions) * len(rows))
    dtype = next(model.parameters()).dtype
    sub = _Substitution()
    with unit_patch(units, sub):
        for start in range(0, len(q_pos), config.queries_per_pass):
            sl = slice(start, start + config.queries_per_pass)
            pos, row_of, alpha = q_pos[sl], q_row[sl], q_alpha[sl]
            ext, position_ids, allowed = _query_inputs(input_ids, mask, pos)
            sub.plan = {}
            for row in rows:
                local = (row_of == row).nonzero().squeeze(1)
                if len(local):
                    sub.plan[row] = (t_len + local, pos[local], alpha[local][None, :, None])
            sub.taken = {}
            with torch.enable_grad():
                logits = last_logits(model, len(pos), input_ids=ext, attention_mask=_additive(allowed, dtype),
                                     position_ids=position_ids)
                prob = _gold_prob(logits, input_ids[:, pos + 1]) * valid[:, pos].to(torch.float32)
                order = list(sub.taken)
                grads = torch.autograd.grad(prob.sum(), [sub.taken[r][1] for r in order])
            for row, grad in zip(order, grads):
                a = sub.taken[row][0]
                acc[:, row] += (a.double() * grad.double()).sum(dim=1) / m
            bar.update(1)


def _score_truncated(model, config, units, rows, input_ids, mask, valid, acc, bar) -> None:
    """MemPi's procedure: per (row, t) one pass of the rows cut to x_0..x_t, ig_steps copies side by side."""
    device = input_ids.device
    b, m = input_ids.shape[0], config.ig_steps
    alpha = torch.linspace(0, 1, m, device=device).repeat_interleave(b)  # copy-major, as .repeat(m, 1)
    sub = _Substitution()
    with unit_patch(units, sub):
        for row in rows:
            for t in range(config.prefix_len - 1, input_ids.shape[1] - 1):
                bar.update(1)
                if not valid[:, t].any():
                    continue
                ids = input_ids[:, : t + 1].repeat(m, 1)
                cut = None if mask is None else mask[:, : t + 1].repeat(m, 1)
                here = torch.tensor([t], device=device)
                sub.plan = {row: (here, here, alpha[:, None, None])}  # alpha per copy
                sub.taken = {}
                with torch.enable_grad():
                    logits = last_logits(model, 1, input_ids=ids, attention_mask=cut)[:, -1]
                    gold = input_ids[:, t + 1].repeat(m)
                    prob = _gold_prob(logits, gold) * valid[:, t].repeat(m).to(torch.float32)
                    a, v = sub.taken[row]
                    (grad,) = torch.autograd.grad(prob.sum(), [v])
                contrib = (a.double() * grad.double()).squeeze(1).view(m, b, -1).sum(dim=0) / m
                acc[:, row] += contrib


def ig_scores(model, config: IntegratedGradientsConfig, forget: Rows, units: Units, *,
              progress: bool = True) -> torch.Tensor:
    rows = units.scored(config)
    device = device_of(model)
    t_len = forget.input_ids.shape[1]
    n_pos = t_len - config.prefix_len
    total = torch.zeros(len(units.blocks), units.d_ff, dtype=torch.float64)
    batched = config.batch_positions
    if batched:
        probe = forget.batch(torch.arange(min(2, len(forget))))
        ids = probe[0].to(device)
        pmask = None if probe[1] is None else probe[1].to(device)
        if not _queries_exact(model, ids, pmask, torch.arange(t_len - 1, device=device),
                              next(model.parameters()).dtype):
            warnings.warn("ig: this model does not reproduce its logits with a custom 4D attention mask and "
                          "position ids, so batch_positions falls back to one truncated forward per position "
                          "(exact, slower)")
            batched = False
    n_q = len(rows) * n_pos * config.ig_steps
    per_batch = -(-n_q // config.queries_per_pass) if batched else len(rows) * n_pos
    n_batch = -(-len(forget) // config.batch_size)
    with tqdm(total=n_batch * per_batch, desc=config.method, disable=not progress) as bar:
        for index in index_batches(len(forget), config.batch_size):
            input_ids, mask = forget.batch(index)
            input_ids = input_ids.to(device)
            mask = None if mask is None else mask.to(device)
            valid = target_mask(input_ids, mask, config.prefix_len)
            acc = torch.zeros(len(index), len(units.blocks), units.d_ff, dtype=torch.float64, device=device)
            (_score_queries if batched else _score_truncated)(model, config, units, rows, input_ids, mask, valid,
                                                               acc, bar)
            count = valid.sum(dim=1).double().clamp_min(1)
            total += (acc / count[:, None, None]).sum(dim=0).cpu()
    scores = unscored(units)
    scores[rows] = (total[rows] / len(forget)).float()
    return scores


def fit_ig(model, config: IntegratedGradientsConfig, forget, retain, *, adapter_name: str, progress: bool) -> None:
    fit_with_scores(ig_scores, model, config, forget, adapter_name=adapter_name, progress=progress)


register_method(IntegratedGradientsConfig, fit_ig, score=ig_scores)
