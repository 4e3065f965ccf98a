"""MemSinks (Ghosal et al.): sequence-tied sink neurons that isolate memorization of repeated documents."""

from .collator import PAD_SEQ_ID, MemSinksCollator, document_attention_mask, document_id
from .config import MemSinksConfig
from .trainer import MemSinksTrainer

__all__ = ["PAD_SEQ_ID", "MemSinksCollator", "MemSinksConfig", "MemSinksTrainer", "document_attention_mask",
           "document_id"]
