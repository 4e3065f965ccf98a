"""Sequence ids for MemSinks and a collator that carries them through packing (Ghosal et al. 2025,
"Memorization Sinks").

Every document gets an id from a hash of its tokens, so exact repeats share an id (and therefore their sinks)
while near-duplicates do not; a dataset column (`seq_id`) can supply ids instead (a source, an author).
Packed rows hold several documents: each token carries its document's id, and attention is causal AND
within the document occurrence (the released code let tokens see future tokens of other documents). Two
copies of one document in a row are separate occurrences: they share sinks but not attention.
"""

from __future__ import annotations

import numpy as np
import torch

from ..keys import check_keys, hash63

PAD_SEQ_ID = 1  # pad tokens' id: fixed, non-zero, never given to a document (their loss is masked anyway)
IGNORE_INDEX = -100


def document_id(tokens) -> int:
    """A document's sequence id: `hash63` of its token ids (little-endian int64), never 0 or `PAD_SEQ_ID`."""
    value = hash63(np.asarray(tokens, dtype="<i8").tobytes())
    return value if value > PAD_SEQ_ID else value + 2


def document_attention_mask(segments: torch.Tensor) -> torch.Tensor:
    """Bool (B, 1, T, T) from per-token document-occurrence indices (B, T): query i sees key j iff j <= i and
    both belong to the same occurrence. True = attend (the 4-D form transformers passes to SDPA as is)."""
    t = segments.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    return (same & causal)[:, None]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The bool mask as 0 / most-negative floats, for eager attention (which adds the mask to the scores)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


class MemSinksCollator:
    """Rows of documents (`input_ids`, any length; optional `id_column` with ids > 0) -> a MemSinks batch:
    `input_ids`, `labels` (-100 on pads and on each document's first token, which no other document may
    predict), `seq_ids` (B, T), `position_ids` restarting at each document, and a 4-D `attention_mask`.

    `pack=True` concatenates the batch's documents and cuts the stream into rows of `block_size` (a document
    split across rows keeps its id in both); otherwise each document is its own row (cut at `block_size`)."""

    def __init__(self, pad_token_id: int = 0, block_size: int | None = None, pack: bool = False,
                 id_column: str = "seq_id"):
        if pack and not block_size:
            raise ValueError(f"pack=True needs a block_size > 0, got block_size={block_size!r}")
        if block_size is not None and block_size < 2:
            raise ValueError(f"block_size={block_size!r} must be >= 2")
        self.pad_token_id, self.block_size, self.pack, self.id_column = pad_token_id, block_size, pack, id_column

    def _documents(self, features: list[dict]) -> list[tuple[list[int], int]]:
        docs = []
        for f in features:
            tokens = [int(t) for t in f["input_ids"]]
            if not tokens:
                raise ValueError("a document has no tokens")
            given = f.get(self.id_column)
            sid = document_id(tokens) if given is None else int(check_keys([int(given)])[0])
            docs.append((tokens, sid))
        return docs

    def _rows(self, docs) -> list[list[tuple[list[int], int]]]:
        if not self.pack:
            return [[(tokens[: self.block_size], sid)] for tokens, sid in docs]
        rows, row, room = [], [], self.block_size
        for tokens, sid in docs:
            while tokens:
                piece, tokens = tokens[:room], tokens[room:]
                row.append((piece, sid))
                room -= len(piece)
                if room == 0:
                    rows.append(row)
                    row, room = [], self.block_size
        return rows + [row] if row else rows

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        rows = self._rows(self._documents(features))
        width = self.block_size if self.pack else max(sum(len(t) for t, _ in r) for r in rows)
        shape = (len(rows), width)
        input_ids = torch.full(shape, self.pad_token_id, dtype=torch.long)
        labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
        seq_ids = torch.full(shape, PAD_SEQ_ID, dtype=torch.long)
        segments = torch.full(shape, -1, dtype=torch.long)  # pads: their own occurrence
        positions = torch.zeros(shape, dtype=torch.long)
        for r, row in enumerate(rows):
            start = 0
            for s, (tokens, sid) in enumerate(row):
                span = slice(start, start + len(tokens))
                input_ids[r, span] = torch.tensor(tokens)
                labels[r, start + 1: start + len(tokens)] = torch.tensor(tokens[1:], dtype=torch.long)
                seq_ids[r, span], segments[r, span] = sid, s
                positions[r, span] = torch.arange(len(tokens))
                start += len(tokens)
        return {"input_ids": input_ids, "labels": labels, "seq_ids": seq_ids, "position_ids": positions,
                "attention_mask": document_attention_mask(segments)}


__all__ = ["IGNORE_INDEX", "PAD_SEQ_ID", "MemSinksCollator", "additive_mask", "document_attention_mask",
           "document_id"]
