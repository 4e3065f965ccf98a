"""MemSinks (Ghosal et al.): sequence-tied sink neurons that isolate memorization of repeated documents."""

from .collator import PAD_SEQ_ID, MemSinksCollator, document_attention_mask, document_id
from .config import MemSinksConfig
from .evaluate import DROP_RESCALES, HEADLINE, OWN_SINKS, PLAIN, SINKS_ON, evaluate_memsinks, sinks_dropped
from .trainer import MemSinksTrainer

__all__ = ["DROP_RESCALES", "HEADLINE", "OWN_SINKS", "PAD_SEQ_ID", "PLAIN", "SINKS_ON", "MemSinksCollator",
           "MemSinksConfig", "MemSinksTrainer", "document_attention_mask", "document_id", "evaluate_memsinks",
           "sinks_dropped"]
