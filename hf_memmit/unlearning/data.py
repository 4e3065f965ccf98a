"""Forget/retain rows: input checks, batching and the per-row loss every method optimises or scores."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


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


def check_disjoint(forget: Rows, retain: Rows) -> None:
    """Forget and retain must not share rows: a shared row enters the loss with both signs and its forget
    signal cancels (the reference's retain set held the whole noise set, forget rows included). By `id` when
    both sets carry one, else by identical token rows."""
    if forget.ids is not None and retain.ids is not None:
        shared = sorted(set(forget.ids) & set(retain.ids), key=str)
        what = "id"
    else:
        seen = {tuple(r) for r in forget.input_ids.tolist()}
        shared = [i for i, r in enumerate(retain.input_ids.tolist()) if tuple(r) in seen]
        what = "identical input_ids row (retain index)"
    if shared:
        raise ValueError(
            f"forget and retain overlap in {len(shared)} row(s), e.g. {what} {shared[0]!r}; allowed: disjoint sets "
            "(drop the forget rows from the retain set)"
        )


def row_losses(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean next-token cross-entropy of each row [B] (labels = input_ids; positions with mask 0 ignored)."""
    device = next(model.parameters()).device
    input_ids = input_ids.to(device)
    if attention_mask is not None:
        attention_mask = attention_mask.to(device)
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
    ce = F.cross_entropy(logits.transpose(1, 2), input_ids[:, 1:], reduction="none")
    if attention_mask is None:
        return ce.mean(dim=1)
    valid = attention_mask[:, 1:].to(ce.dtype)
    return (ce * valid).sum(dim=1) / valid.sum(dim=1).clamp_min(1)


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


def signed_union(forget: Rows, retain: Rows) -> tuple[Rows, torch.Tensor]:
    """Forget and retain rows in one set (padded to a common length) and a sign per row: +1 forget, -1 retain."""
    length = max(forget.input_ids.shape[1], retain.input_ids.shape[1])
    f, r = forget.padded_to(length), retain.padded_to(length)
    rows = Rows(torch.cat([f.input_ids, r.input_ids]), torch.cat([f.attention_mask, r.attention_mask]))
    sign = torch.cat([torch.ones(len(f)), -torch.ones(len(r))])
    return rows, sign
