"""Train-time regularizers register themselves: `hf-memmit train --regularizer NAME --set KEY=VALUE` offers and
builds every registered one, and every trainer takes its config as `method_config=`."""

import dataclasses
import json

import pytest
from click.testing import CliRunner
from transformers import Trainer

from hf_memmit.cli import main
from hf_memmit.trainers import (LossTruncationConfig, LossTruncationTrainer, MemSinksCollator, MemSinksTrainer,
                                SpectralNormConfig, register_regularizer, regularizer_names, regularizer_trainer,
                                unregister_regularizer)


def test_every_regularizer_is_registered_in_its_file_order():
    assert regularizer_names() == ["none", "spectral_norm", "loss_truncation", "goldfish", "example_tied_dropout",
                                   "memsinks"]


def test_set_options_build_the_config_and_record_it():
    cls, kwargs, record = regularizer_trainer("loss_truncation", {"drop_fraction": 0.2, "min_count": 5})
    assert cls is LossTruncationTrainer and set(kwargs) == {"method_config"}
    assert kwargs["method_config"] == LossTruncationConfig(drop_fraction=0.2, min_count=5)
    assert record == {"regularizer": "loss_truncation",
                      "regularizer_config": dataclasses.asdict(LossTruncationConfig(drop_fraction=0.2, min_count=5))}
    cls, kwargs, _ = regularizer_trainer("memsinks", {"g": 0.5})
    assert cls is MemSinksTrainer and isinstance(kwargs["data_collator"], MemSinksCollator)
    assert regularizer_trainer("none", {"p_gen": None}) == (None, {}, {"regularizer": "none"})
    with pytest.raises(ValueError, match="spectral_norm: unknown option.*allowed: weight, penalty"):
        regularizer_trainer("spectral_norm", {"wieght": 0.1})
    with pytest.raises(ValueError, match="'none' takes no options"):
        regularizer_trainer("none", {"weight": 0.1})


def test_cli_set_reaches_the_config():
    runner = CliRunner()
    res = runner.invoke(main, ["train", "--regularizer", "loss_truncation", "--set", "drop_fraction=1"])
    assert res.exit_code == 2 and "drop_fraction=1 is out of range; allowed: [0, 1)" in res.output
    res = runner.invoke(main, ["train", "--regularizer", "spectral_norm", "--set", "nope=1"])
    assert res.exit_code == 2 and "unknown option(s) nope" in res.output


def test_a_registered_regularizer_is_offered_by_the_cli():
    @dataclasses.dataclass
    class NoopConfig:
        strength: float = 1.0

    class NoopTrainer(Trainer):
        def __init__(self, *args, method_config=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.method_config = method_config

    register_regularizer("noop", NoopConfig, NoopTrainer)
    try:
        assert regularizer_names()[-1] == "noop"
        assert "noop" in CliRunner().invoke(main, ["train", "--help"], terminal_width=400).output
        cls, kwargs, _ = regularizer_trainer("noop", {"strength": 2.0})
        assert cls is NoopTrainer and kwargs == {"method_config": NoopConfig(2.0)}
    finally:
        unregister_regularizer("noop")
    assert "noop" not in regularizer_names()
    res = CliRunner().invoke(main, ["train", "--regularizer", "noop"])
    assert res.exit_code == 2 and "noop" in res.output
    with pytest.raises(TypeError, match="allowed: a dataclass config"):
        register_regularizer("bad", SpectralNormConfig(), NoopTrainer)


@pytest.mark.slow
def test_cli_trains_with_memsinks(tmp_path):
    """MemSinks through `hf-memmit train`: its own collator keys each TinyMem row by a hash of its tokens."""
    out = tmp_path / "memsinks"
    res = CliRunner().invoke(main, ["train", "--profile", "tiny", "--layers", "2", "--epochs", "0.5", "--out",
                                    str(out), "--regularizer", "memsinks", "--set", "g=0.5"])
    assert res.exit_code == 0, res.output
    info = json.loads((out / "tinymem.json").read_text())
    assert info["regularizer"] == "memsinks" and info["regularizer_config"]["g"] == 0.5
