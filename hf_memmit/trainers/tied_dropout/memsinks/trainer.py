"""MemSinksTrainer: tied dropout keyed by per-token sequence ids (Ghosal et al. 2025, "Memorization Sinks")."""

from __future__ import annotations

import torch

from ...registry import register_regularizer
from ..trainer import TiedDropoutTrainer
from .collator import MemSinksCollator, additive_mask
from .config import MemSinksConfig


def _pad_token_id(*sources) -> int:
    for source in sources:
        pad = getattr(source, "pad_token_id", None)
        if pad is not None:
            return int(pad)
    return 0


class MemSinksTrainer(TiedDropoutTrainer):
    """`Trainer` for MemSinks on GPT-2 and Llama-family causal LMs (any model whose MLP down projections match
    `MemSinksConfig.target_modules`).

    Batches carry `seq_ids` (B, T) (one id per token, > 0), as `MemSinksCollator` makes them (the default
    collator, unpacked, when none is given). A training batch without `seq_ids` raises. Training uses each
    token's own sinks; evaluation and the model after training use `method_config.eval_mode` (sinks
    dropped by default). Switch modes with `hf_memmit.trainers.tied_dropout.tied_dropout_mode(model, ...)`.
    """

    keys_input = "seq_ids"

    def __init__(self, model=None, args=None, data_collator=None, *rest, method_config: MemSinksConfig | None = None,
                 **kwargs):
        self.method_config = method_config or MemSinksConfig()
        if data_collator is None:
            data_collator = MemSinksCollator(
                pad_token_id=_pad_token_id(kwargs.get("processing_class"), getattr(model, "config", None)))
        super().__init__(model, args, data_collator, *rest, method_config=self.method_config.to_tied(), **kwargs)
        # a dataset column of user-given ids must reach the collator
        self.data_collator = self.keep_columns(self.data_collator, [getattr(data_collator, "id_column", "seq_id")])

    def missing_keys_message(self, inputs: dict) -> str:
        return ("MemSinksTrainer: the training batch has no 'seq_ids' (batch keys: "
                f"{sorted(inputs)}); each token's sinks come from its sequence id. Use MemSinksCollator (it "
                "hashes each document's tokens) or a collator that adds per-token 'seq_ids'")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        if mask is not None and mask.dim() == 4 and mask.dtype == torch.bool and self._eager_attention():
            inputs["attention_mask"] = additive_mask(mask, next(model.parameters()).dtype)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _eager_attention(self) -> bool:
        return getattr(getattr(self.model, "config", None), "_attn_implementation", "sdpa") == "eager"

# TinyMem-style fixed-length rows: each row is a document keyed by a hash of its tokens
register_regularizer("memsinks", MemSinksConfig, MemSinksTrainer, data_collator=MemSinksCollator)

__all__ = ["MemSinksTrainer"]
