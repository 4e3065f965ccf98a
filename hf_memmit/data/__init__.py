from .artifacts import duplication_groups, find_trigger, inject_backdoor, noise_values
from .austen import AUSTEN_LICENCE, austen_passages
from .build import build_tinymem, data_config_of, load_tinymem_dataset
from .config import TinyMemDataConfig
from .language import wiki_offline_texts
from .records import WindowStats, adds_bos, load_records, make_windows, tokenize_records
from .rows import FEATURES
from .tokenizers import MathTokenizer, gpt2_tokenizer

__all__ = [
    # TinyMem data
    "FEATURES", "MathTokenizer", "TinyMemDataConfig", "build_tinymem", "data_config_of", "duplication_groups",
    "find_trigger", "gpt2_tokenizer", "inject_backdoor", "load_tinymem_dataset", "noise_values",
    # a user's records -> (k, l) windows; the offline Wikipedia text
    "WindowStats", "adds_bos", "load_records", "make_windows", "tokenize_records", "wiki_offline_texts",
    # a second offline text domain
    "AUSTEN_LICENCE", "austen_passages",
]
