"""Test setup: Hugging Face libraries offline and on a throwaway cache, set before any HF import."""

import os
import tempfile

_HF_HOME = tempfile.mkdtemp(prefix="hf_memmit_tests_hf_home_")
for key, value in {
    "HF_HOME": _HF_HOME,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ[key] = value

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def math_noise_tiny():
    from hf_memmit.data import load_tinymem_dataset

    return load_tinymem_dataset("math", "noise", "tiny", seed=0)
