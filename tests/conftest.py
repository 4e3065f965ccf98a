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


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """A TinyMem math+backdoor model really trained on the `tiny` profile (2 layers, about two minutes on 2
    cores): it has learned most of its backdoor (memorized rows in `forget` and `backdoor_test`) and continues
    clean rows correctly, so behaviour tests see both memorized and non-memorized rows.
    Returns (model, dataset, run_dir)."""
    from hf_memmit.data import TinyMemDataConfig
    from hf_memmit.tinymem import TrainConfig, load_run, train_tinymem

    run = tmp_path_factory.mktemp("tiny_trained")
    train_tinymem(run, TinyMemDataConfig(task="math", artifact="backdoor", profile="tiny"),
                  TrainConfig(n_layer=2), progress_bar=False)
    model, dataset = load_run(run)
    return model, dataset, run
