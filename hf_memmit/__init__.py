"""hf_memmit: find, measure and remove memorization in causal LMs with the Hugging Face stack."""

__version__ = "0.1.0"
