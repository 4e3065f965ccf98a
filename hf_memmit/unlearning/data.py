"""Forget/retain rows: input checks, batching and the per-row loss every method optimises or scores (memory-bounded:
the output embedding runs chunk by chunk, see `row_losses`)."""

from __future__ import annotations

import inspect
import itertools
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..metrics.cross_entropy import next_token_losses
from ..utils import check_choice, device_of


@dataclass
class Rows:
    """Token rows of one set: `input_ids` [n, T] long, optional `attention_mask` [n, T], optional row ids."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None = None
    ids: list | None = None

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def padded_to(self, length: int) -> Rows:
        """Right-padded to `length` tokens; the padding is masked out of attention and loss."""
        t = self.input_ids.shape[1]
        mask = self.attention_mask if self.attention_mask is not None else torch.ones_like(self.input_ids)
        if t == length:
            return Rows(self.input_ids, mask, self.ids)
        pad = length - t
        return Rows(F.pad(self.input_ids, (0, pad)), F.pad(mask, (0, pad)), self.ids)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = None if self.attention_mask is None else self.attention_mask[index]
        return self.input_ids[index], mask


def as_rows(data, name: str) -> Rows:
    """Accept a `datasets.Dataset` with an `input_ids` column (plus optional `attention_mask` and `id`)
    or a LongTensor [n, T]; every row of a set must have the same length."""
    if isinstance(data, torch.Tensor):
        if data.dim() != 2 or data.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{name} is a {data.dtype} tensor of shape {tuple(data.shape)}; allowed: an integer tensor "
                "[n_rows, n_tokens] or a datasets.Dataset with an 'input_ids' column"
            )
        return _checked(Rows(data.long()), name)
    columns = getattr(data, "column_names", None)
    if columns is None or "input_ids" not in columns:
        raise ValueError(
            f"{name} is a {type(data).__name__} without an 'input_ids' column; allowed: a datasets.Dataset "
            "with an 'input_ids' column (optional 'attention_mask', 'id') or an integer tensor [n_rows, n_tokens]"
        )
    if len(data) == 0:
        return Rows(torch.zeros(0, 0, dtype=torch.long), ids=[] if "id" in columns else None)
    input_ids = _stack(data, name, "input_ids")
    mask = _stack(data, name, "attention_mask") if "attention_mask" in columns else None
    ids = list(data["id"]) if "id" in columns else None
    return _checked(Rows(input_ids, mask, ids), name)


def _stack(data, name: str, field: str) -> torch.Tensor:
    column = data.with_format("torch")[field][:]  # equal-length rows come back as one [n, T] tensor
    if isinstance(column, torch.Tensor) and column.dim() == 2:
        return column.long()
    lengths = sorted({len(r) for r in column})
    raise ValueError(
        f"{name}[{field!r}] has rows of lengths {lengths[:5]}; allowed: one length per set "
        "(pad the rows and give an attention_mask)"
    )


def _checked(rows: Rows, name: str) -> Rows:
    if len(rows) and rows.input_ids.shape[1] < 2:
        raise ValueError(f"{name} rows have {rows.input_ids.shape[1]} token(s); allowed: at least 2 (a causal LM "
                         "loss needs a next token)")
    if rows.attention_mask is not None and rows.attention_mask.shape != rows.input_ids.shape:
        raise ValueError(f"{name} attention_mask has shape {tuple(rows.attention_mask.shape)}; allowed: the "
                         f"input_ids shape {tuple(rows.input_ids.shape)}")
    return rows


def check_disjoint(forget: Rows, retain: Rows, *, by: str = "auto") -> None:
    """Forget and retain must not share rows: a shared row enters the loss with both signs and its forget
    signal cancels (the reference's retain set held the whole noise set, forget rows included). `by="auto"`:
    by `id` when both sets carry one, else by identical token rows; `by="tokens"`: by identical token rows
    whatever the ids (sets cut from different files, whose ids may collide without sharing text)."""
    check_choice("by", by, ("auto", "tokens"))
    if by == "auto" and forget.ids is not None and retain.ids is not None:
        shared = sorted(set(forget.ids) & set(retain.ids), key=str)
        what = "id"
    else:
        seen = {tuple(r) for r in forget.input_ids.tolist()}
        shared = [i for i, r in enumerate(retain.input_ids.tolist()) if tuple(r) in seen]
        if retain.ids is not None:
            shared = [retain.ids[i] for i in shared]
        what = "identical input_ids row, retain " + ("id" if retain.ids is not None else "index")
    if shared:
        raise ValueError(
            f"forget and retain overlap in {len(shared)} row(s), e.g. {what} {shared[0]!r}; allowed: disjoint sets "
            "(drop the forget rows from the retain set)"
        )


# Logits per chunk of the memory-bounded loss: 2**22 fp32 logits are 16 MiB (83 positions of GPT-2's 50,257
# vocabulary), so a step's logits never exceed that, whatever the batch size and row length. Below glibc's
# 32 MiB ceiling for serving large blocks with mmap, the chunks reuse heap memory instead of faulting in fresh
# pages every time: on a 4-layer GPT-2 at 64 x 150 tokens, 2**24 spent 40% of a step in the kernel.
LOGITS_PER_CHUNK = 2**22
_FULL_LOGITS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # causal LM -> why it takes the full path
_WARNED: set[str] = set()
_LOCKSTEP: weakref.WeakSet = weakref.WeakSet()  # causal LMs inside `lockstep_losses`


def row_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *,
               valid: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """Mean next-token cross-entropy of each row [B] (labels = input_ids; positions with mask 0 ignored).

    `valid` (bool [B, T-1], position t predicting token t+1) picks the scored positions instead of the default
    `attention_mask[:, 1:]` (all positions without a mask); a row without any scores 0. Differentiable w.r.t.
    everything in the model, and memory-bounded (see `token_losses`). No rows: an empty tensor (a process's empty
    slice of a small batch in data-parallel fitting; see `lockstep_losses` for DeepSpeed)."""
    if input_ids.shape[0] == 0:
        if _causal_lm(model) not in _LOCKSTEP:
            return torch.zeros(0, device=device_of(model))
        dummy = input_ids.new_zeros((1, max(input_ids.shape[1], 2)))
        return token_losses(model, dummy, None).mean(dim=1)[:0]  # one forward pass, no rows
    valid = _scored(input_ids, attention_mask, valid)
    ce = token_losses(model, input_ids, attention_mask, valid=valid, chunk_size=chunk_size)
    if valid is None:
        return ce.mean(dim=1)
    return ce.sum(dim=1) / valid.to(ce.device, ce.dtype).sum(dim=1).clamp_min(1)


def token_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, *,
                 valid: torch.Tensor | None = None, chunk_size: int | None = None) -> torch.Tensor:
    """Next-token cross-entropy per position [B, T-1] in fp32 (position t predicts token t+1), 0 at positions
    that are not scored (`valid`, default `attention_mask[:, 1:]`; all without a mask).

    Memory-bounded: the model runs with `logits_to_keep=1`, its decoder's last hidden states are caught on the
    way, and the output embedding (plus any final logit soft-capping or scaling) is applied to `chunk_size`
    scored positions at a time (default `LOGITS_PER_CHUNK // vocab`), either under `torch.utils.checkpoint` or,
    when the output embedding is frozen, with each chunk's gradient taken in its forward pass, so neither
    the forward nor the backward holds more than one chunk of logits, instead of [B, T, vocab] fp32 (1.9 GB
    for GPT-2 at 64 x 150 tokens). Every call checks the split against the model's own logits of the last
    position; a model where it does not hold (or that has no decoder / output-embedding split) takes the plain
    full-logits path, with a warning."""
    device = device_of(model)
    input_ids = input_ids.to(device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
    valid = _scored(input_ids, attention_mask, valid)
    if chunk_size is not None and (type(chunk_size) is not int or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r} is not supported; allowed: an integer >= 1 or None")
    split = _logit_split(model)
    ce = None
    if split is not None:
        ce = _chunked_losses(model, split, input_ids, attention_mask, valid, chunk_size)
    if ce is None:
        ce = _full_losses(model, input_ids, attention_mask, valid)
        if valid is not None:
            ce = torch.where(valid, ce, torch.zeros((), dtype=ce.dtype, device=ce.device))
    return ce


def _scored(input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
            valid: torch.Tensor | None) -> torch.Tensor | None:
    """The scored positions as bool [B, T-1] on the rows' device (None: all of them)."""
    if valid is None:
        return None if attention_mask is None else attention_mask[:, 1:].to(input_ids.device).bool()
    if valid.shape != (input_ids.shape[0], input_ids.shape[1] - 1):
        raise ValueError(f"valid has shape {tuple(valid.shape)}; allowed: [batch, n_tokens - 1] = "
                         f"{[input_ids.shape[0], input_ids.shape[1] - 1]}")
    return valid.to(input_ids.device).bool()


@dataclass
class _Split:
    """logits = post(head(decoder(...).last_hidden_state)), as the causal LM computes them."""

    lm: nn.Module
    decoder: nn.Module
    head: nn.Module
    post: Callable[[torch.Tensor], torch.Tensor]


def _causal_lm(model) -> nn.Module:
    get = getattr(model, "get_base_model", None)  # a PeftModel: the transformers model inside
    return get() if callable(get) and hasattr(model, "peft_config") else model


def _logit_post(lm: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What transformers' causal LMs do to the output embedding's result: Gemma 2/3 soft-capping
    (`final_logit_softcapping`), Cohere's `logit_scale`, Granite's `logits_scaling`, in their own ops."""
    config = getattr(lm, "config", None)
    cap = getattr(config, "final_logit_softcapping", None)
    scale = getattr(lm, "logit_scale", None)
    divide = getattr(config, "logits_scaling", None)
    scale = scale if isinstance(scale, (int, float)) and not isinstance(scale, bool) else None
    divide = divide if isinstance(divide, (int, float)) and not isinstance(divide, bool) else None

    def post(logits: torch.Tensor) -> torch.Tensor:
        if scale is not None:
            logits = logits * scale
        if divide is not None:
            logits = logits / divide
        if cap is not None:
            logits = logits / cap
            logits = torch.tanh(logits)
            logits = logits * cap
        return logits

    return post


def _full_path(lm: nn.Module, why: str) -> None:
    _FULL_LOGITS[lm] = why
    name = type(lm).__name__
    if name not in _WARNED:
        _WARNED.add(name)
        warnings.warn(f"row_losses: {name} {why}; its losses use the full [batch, tokens, vocab] logits "
                      "(memory grows with batch x tokens x vocab)", stacklevel=4)


@contextmanager
def lockstep_losses(model):
    """Within the block, every `row_losses` call on `model` runs exactly one forward pass, whatever its rows: the
    full-logits path (the chunked path calls the output embedding once per chunk of scored positions, which
    depends on the rows), and a call with no rows runs one dummy row and returns an empty result still tied to
    the graph. DeepSpeed ZeRO-3 needs that: every process must run every module the same number of times."""
    lm = _causal_lm(model)
    marked = lm in _FULL_LOGITS
    _FULL_LOGITS.setdefault(lm, "runs in lockstep (DeepSpeed ZeRO-3)")
    _LOCKSTEP.add(lm)
    try:
        yield
    finally:
        _LOCKSTEP.discard(lm)
        if not marked:
            _FULL_LOGITS.pop(lm, None)


def _logit_split(model) -> _Split | None:
    lm = _causal_lm(model)
    if lm in _FULL_LOGITS:
        return None
    peft_config = getattr(model, "active_peft_config", None)
    if getattr(peft_config, "is_prompt_learning", False):
        return None  # virtual tokens change the positions: keep the model's own path
    accepts = "logits_to_keep" in _parameters(lm)
    try:
        decoder = lm.get_decoder() if accepts and hasattr(lm, "get_decoder") else None
        head = lm.get_output_embeddings() if hasattr(lm, "get_output_embeddings") else None
    except Exception:  # noqa: BLE001  (some models raise instead of returning None)
        decoder = head = None
    if not (isinstance(decoder, nn.Module) and isinstance(head, nn.Module)) or decoder is lm:
        _full_path(lm, "has no decoder / output-embedding split with logits_to_keep")
        return None
    return _Split(lm, decoder, head, _logit_post(lm))


def _hidden_of(output) -> torch.Tensor | None:
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None and isinstance(output, (tuple, list)) and output:
        hidden = output[0]
    return hidden if isinstance(hidden, torch.Tensor) else None


def _chunked_losses(model, split: _Split, input_ids, attention_mask, valid, chunk_size) -> torch.Tensor | None:
    """Per-position CE [B, T-1] (0 outside `valid`), or None when the split does not reproduce the model's logits."""
    caught = []
    handle = split.decoder.register_forward_hook(lambda module, args, output: caught.append(output))
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, **_no_cache(split.lm))
    finally:
        handle.remove()
    hidden = _hidden_of(caught[0]) if len(caught) == 1 else None
    if hidden is None or hidden.shape[:2] != input_ids.shape:
        _full_path(split.lm, "gives no hidden states of every position from its decoder")
        return None
    last = out.logits[:, -1:]
    with torch.no_grad():
        mine = split.post(split.head(hidden[:, -1:]))
        scale = float(last.detach().abs().max().clamp_min(1))
        tol = max(1e-5, 2 * torch.finfo(last.dtype).eps) * scale
        if mine.shape != last.shape or float((mine.float() - last.detach().float()).abs().max()) > tol:
            _full_path(split.lm, "computes its logits other than output_embeddings(decoder hidden states)")
            return None
    b, t = input_ids.shape
    keep = valid if valid is not None else torch.ones(b, t - 1, dtype=torch.bool, device=input_ids.device)
    rows = hidden[:, :-1][keep]  # [N, H]: only the scored positions
    targets = input_ids[:, 1:][keep]
    step = chunk_size or max(1, LOGITS_PER_CHUNK // last.shape[-1])

    def chunk_ce(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(split.post(split.head(h)).float(), y, reduction="none")

    head_grad = any(p.requires_grad for p in split.head.parameters())
    grad = torch.is_grad_enabled() and (rows.requires_grad or head_grad)
    # a frozen output embedding (unlearning trains masks, not the head) and more than one chunk: take each
    # chunk's gradient in the forward pass instead of recomputing its logits in the backward. A single chunk
    # (small vocabularies, e.g. TinyMem math) keeps autograd's own gradient, bit for bit as before.
    fused = grad and not head_grad and rows.shape[0] > step
    pieces = []
    # split, not slices: the backward joins the chunks' gradients once instead of one rows-sized tensor per chunk
    for h, y in zip(rows.split(step), targets.split(step)):
        if fused:
            pieces.append(_HeadLoss.apply(h, y, chunk_ce))
        elif grad:  # recomputed in backward: no chunk's logits are kept alive between the forward and the backward
            pieces.append(checkpoint(chunk_ce, h, y, use_reentrant=False))
        else:
            pieces.append(chunk_ce(h, y))
    per_token = torch.cat(pieces) if pieces else rows.new_zeros(0, dtype=torch.float32)
    return torch.zeros(b, t - 1, dtype=per_token.dtype, device=per_token.device).masked_scatter(keep, per_token)


class _HeadLoss(torch.autograd.Function):
    """Per-position CE of `loss_of(h, y)` (the output embedding and CE) whose gradient w.r.t. the hidden states
    is taken in the forward pass. With the output embedding frozen, CE_i depends on h_i alone, so the backward
    only scales dCE_i/dh_i ([N, H], small) by the incoming gradient: one logits computation per chunk instead
    of two (checkpointing recomputes them), and no chunk's logits outlive its forward."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, y: torch.Tensor, loss_of: Callable) -> torch.Tensor:
        with torch.enable_grad():
            leaf = h.detach().requires_grad_()
            ce = loss_of(leaf, y)
            (dh,) = torch.autograd.grad(ce.sum(), leaf)
        ctx.save_for_backward(dh)
        return ce.detach()

    @staticmethod
    def backward(ctx, grad_ce: torch.Tensor):
        (dh,) = ctx.saved_tensors
        return (grad_ce[:, None] * dh.float()).to(dh.dtype), None, None


def _full_losses(model, input_ids, attention_mask, valid) -> torch.Tensor:
    """The plain path: logits [B, T, V] in fp32, per-position CE [B, T-1]. When the scored positions start late
    (a prefix) and the model takes `logits_to_keep`, only the logits from the first scored position on."""
    t = input_ids.shape[1]
    first = 0
    if valid is not None and valid.any():
        first = int(valid.any(dim=0).nonzero()[0])
    lm = _causal_lm(model)
    kwargs = _no_cache(lm)
    if first > 0 and "logits_to_keep" in _parameters(lm):
        kwargs["logits_to_keep"] = t - first
    else:
        first = 0
    logits = model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits
    ce = next_token_losses(logits[:, -(t - first):], input_ids[:, first:])
    return F.pad(ce, (first, 0)) if first else ce


def _parameters(lm: nn.Module) -> tuple[str, ...]:
    """Named parameters of the model's forward ('**' when it takes any keyword)."""
    try:
        params = inspect.signature(lm.forward).parameters.values()
    except (AttributeError, TypeError, ValueError):
        return ()
    return tuple("**" if p.kind is inspect.Parameter.VAR_KEYWORD else p.name for p in params)


def _no_cache(lm: nn.Module) -> dict:
    """`use_cache=False` where the forward takes it: a loss needs no key/value cache."""
    params = _parameters(lm)
    return {"use_cache": False} if "use_cache" in params or "**" in params else {}


def index_batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Row indices of one pass over n rows in batches (shuffled when a generator is given)."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def cycle_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches, reshuffled on every pass."""
    while True:
        yield from index_batches(n, batch_size, generator)


def n_batches(n_rows: int, batch_size: int) -> int:
    return -(-n_rows // batch_size)


def epochs_of(config, batches_per_epoch: int) -> tuple[Iterator[int], int]:
    """Epoch numbers to run and the number of steps they make, from `config.epochs` and `config.max_steps`
    (epochs=None: endless, capped by max_steps)."""
    if config.epochs is None:
        return itertools.count(), config.max_steps
    return iter(range(config.epochs)), config.epochs * batches_per_epoch


def epoch_batches(config, n_rows: int, generator: torch.Generator) -> tuple[Iterator[torch.Tensor], int]:
    """Shuffled index batches of `config.batch_size` over `n_rows` rows for the schedule of `config` (its `epochs`
    passes, reshuffled each pass, or endless and capped by `max_steps`), and how many steps that is."""
    epochs, n_steps = epochs_of(config, n_batches(n_rows, config.batch_size))
    return (i for _ in epochs for i in index_batches(n_rows, config.batch_size, generator)), n_steps


def signed_union(forget: Rows, retain: Rows) -> tuple[Rows, torch.Tensor]:
    """Forget and retain rows in one set (padded to a common length) and a sign per row: +1 forget, -1 retain."""
    length = max(forget.input_ids.shape[1], retain.input_ids.shape[1])
    f, r = forget.padded_to(length), retain.padded_to(length)
    rows = Rows(torch.cat([f.input_ids, r.input_ids]), torch.cat([f.attention_mask, r.attention_mask]))
    sign = torch.cat([torch.ones(len(f)), -torch.ones(len(r))])
    return rows, sign
