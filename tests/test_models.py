import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_memmit.data import TinyMemDataConfig
from hf_memmit.models import tinymem_config, tinymem_model
from hf_memmit.tinymem import TrainConfig, last_complete_checkpoint, train_tinymem

SMALL_DATA = dict(task="math", artifact="noise", profile="tiny", num_main=300, num_extra=0, num_test=50, num_noise=10)
SMALL_TRAIN = dict(n_layer=2, epochs=4, save_every=1, eval_every=2, batch_size=32)


def test_configs_match_the_paper():
    for n in (2, 4, 8, 16):
        cfg = tinymem_config("math", n)
        assert (cfg.n_embd, cfg.n_head, cfg.n_inner, cfg.n_positions, cfg.n_layer) == (128, 4, 512, 150, n)
        assert cfg.activation_function == "relu" and cfg.use_cache is False and cfg.tie_word_embeddings
        assert cfg.resid_pdrop == cfg.embd_pdrop == cfg.attn_pdrop == 0.0
        assert abs(cfg.initializer_range - 0.8 / 128 ** 0.5) < 1e-12
    assert tinymem_config("math").vocab_size == 14
    assert tinymem_config("language").vocab_size == 50257
    assert 800_000 < sum(p.numel() for p in tinymem_model("math", 4).parameters()) < 820_000


@pytest.mark.parametrize("n", [0, 3, 32])
def test_bad_layer_count(n):
    with pytest.raises(ValueError, match=f"n_layer={n}.*allowed: 2, 4, 8, 16"):
        tinymem_config("math", n)
    assert tinymem_config("math", 3, allow_custom_layers=True).n_layer == 3


class _Kill(Exception):
    pass


class _KillAfterSave(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise _Kill()


def _weights(run_dir):
    return load_file(str(run_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    run = tmp_path_factory.mktemp("full")
    summary = train_tinymem(run, TinyMemDataConfig(**SMALL_DATA), TrainConfig(**SMALL_TRAIN), progress_bar=False)
    return run, summary


def test_checkpoint_loads_with_plain_transformers(uninterrupted):
    run, summary = uninterrupted
    code = (
        "import sys, torch\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(run)!r})\n"
        f"t = AutoTokenizer.from_pretrained({str(run)!r})\n"
        "assert type(m).__name__ == 'GPT2LMHeadModel', type(m)\n"
        "ids = torch.tensor([t('^7 49 343 2401$')['input_ids']])\n"
        "print(m(ids).logits.shape[-1], 'hf_memmit' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == ["14", "False"]
    info = json.loads((run / "tinymem.json").read_text())
    assert info["finished"] and info["data_config"]["num_noise"] == 10 and info["seed"] == 0
    assert info["curve"] and "memorized" in info["curve"][-1] and "accuracy" in info["curve"][-1]
    assert not list(run.glob("*.bin"))  # weights in safetensors only


def test_resume_after_a_kill_gives_the_same_weights(uninterrupted, tmp_path):
    run_full, _ = uninterrupted
    data, cfg = TinyMemDataConfig(**SMALL_DATA), TrainConfig(**SMALL_TRAIN)
    with pytest.raises(_Kill):
        train_tinymem(tmp_path, data, cfg, progress_bar=False, callbacks=[_KillAfterSave(step=16)])
    assert not (tmp_path / "tinymem.json").exists()
    assert last_complete_checkpoint(tmp_path / "checkpoints").endswith("checkpoint-16")
    # a half-written newer checkpoint (killed while saving) must be skipped
    (tmp_path / "checkpoints" / "checkpoint-24").mkdir()
    summary = train_tinymem(tmp_path, data, cfg, progress_bar=False)
    assert summary["resumed_from"].endswith("checkpoint-16")
    full, resumed = _weights(run_full), _weights(tmp_path)
    assert full.keys() == resumed.keys()
    for k in full:
        assert torch.equal(full[k], resumed[k]), k


def test_finished_run_is_not_overwritten(uninterrupted):
    run, _ = uninterrupted
    with pytest.raises(FileExistsError, match="finished run.*overwrite"):
        train_tinymem(run, TinyMemDataConfig(**SMALL_DATA), TrainConfig(**SMALL_TRAIN), progress_bar=False)


@pytest.mark.parametrize("kwargs,match", [(dict(schedule="step"), "schedule='step'"),
                                          (dict(epochs=-1), "epochs=-1"),
                                          (dict(warmup=1.5), r"warmup=1.5.*\[0.0, 1.0\)")])
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs).resolve(TinyMemDataConfig(profile="tiny"))
