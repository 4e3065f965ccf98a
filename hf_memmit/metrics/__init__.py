from pathlib import Path

from .callback import MemorizationCallback
from .greedy import GreedyMatch, check_vocab, compute_precision, greedy_match, greedy_match_generate, match_tokens
from .memorization import MemorizationResult, artifact_pairs, measure_memorization
from .memorization_metric.memorization import Memorization
from .memsinks import (document_losses, gap_closure, kl_memorization, loss_report, mean_document_loss,
                       memorization_gap, paper_claims)
from .quality import perplexity, token_accuracy
from .scan import ScanResult, pad_id, scan_records, scan_windows

# The metric script for `evaluate.load(MEMORIZATION_METRIC_PATH)` (offline, from the installed package).
MEMORIZATION_METRIC_PATH = str(Path(__file__).parent / "memorization_metric" / "memorization.py")

__all__ = ["MEMORIZATION_METRIC_PATH", "GreedyMatch", "Memorization", "MemorizationCallback", "MemorizationResult",
           "artifact_pairs", "check_vocab", "compute_precision", "greedy_match", "greedy_match_generate",
           "match_tokens", "measure_memorization", "perplexity", "token_accuracy", "document_losses", "gap_closure",
           "kl_memorization", "loss_report", "mean_document_loss", "memorization_gap", "paper_claims",
           "ScanResult", "pad_id", "scan_records", "scan_windows"]
