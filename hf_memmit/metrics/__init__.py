from .memorization import GreedyMatch, MemorizationResult, greedy_match, measure_memorization
from .quality import perplexity, token_accuracy

__all__ = ["GreedyMatch", "MemorizationResult", "greedy_match", "measure_memorization", "perplexity",
           "token_accuracy"]
