"""Adding an unlearning method is adding one file: a throw-away method registered from a module of its own is
fitted by `unlearn`, listed by the registry and accepted by `hf-memmit unlearn --method`."""

import importlib.util
import textwrap

import pytest
from _tiny_models import one_thread, tiny_gpt2, token_rows
from click.testing import CliRunner

import hf_memmit
from hf_memmit.cli import main
from hf_memmit.unlearning import METHODS, get_method, make_config, method_names, register_method, unlearn
from hf_memmit.unlearning import unregister_method
from hf_memmit.unlearning.weight import GreedyConfig

METHOD_FILE = '''
"""Drop the first weight of every targeted matrix."""

from dataclasses import dataclass

import torch

from hf_memmit.unlearning.registry import register_method
from hf_memmit.unlearning.weight.common import WeightMethodConfig


@dataclass
class FirstWeightConfig(WeightMethodConfig):
    method: str = "first_weight"


def fit_first_weight(model, config, forget, retain, *, adapter_name, progress):
    masks = {}
    for name, layer in model.base_model.mask_layers(adapter_name).items():
        keep = torch.ones_like(layer.get_base_layer().weight, dtype=torch.bool)
        keep.view(-1)[0] = False
        masks[name] = keep
    model.base_model.set_keep_masks(masks, adapter_name)


register_method(FirstWeightConfig, fit_first_weight)
'''


@pytest.fixture
def first_weight(tmp_path):
    path = tmp_path / "first_weight.py"
    path.write_text(textwrap.dedent(METHOD_FILE))
    spec = importlib.util.spec_from_file_location("first_weight", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers the method
    try:
        yield module
    finally:
        if "first_weight" in METHODS:
            unregister_method("first_weight")


def test_a_method_file_registers_itself_everywhere(first_weight):
    assert method_names()[-1] == "first_weight"
    assert get_method("first_weight").config_class is first_weight.FirstWeightConfig
    assert type(make_config("first_weight", ratio=0.5)) is first_weight.FirstWeightConfig

    with one_thread():
        model = unlearn(tiny_gpt2(), make_config("first_weight", target_modules=["c_fc"]), token_rows(4),
                        progress=False)
    masks = model.base_model.keep_masks("default")
    assert len(masks) == 2 and all(int((~keep).sum()) == 1 and not keep.view(-1)[0] for keep in masks.values())

    runner = CliRunner()
    help_text = runner.invoke(main, ["unlearn", "--help"], terminal_width=400).output
    assert "first_weight" in help_text and "balanced_subnet" in help_text
    # the choice is accepted (the command then fails for the missing RUN_DIR, not for the method)
    res = runner.invoke(main, ["unlearn", "--method", "first_weight"])
    assert res.exit_code == 1 and "give either RUN_DIR" in res.output

    unregister_method("first_weight")
    assert "first_weight" not in method_names()
    res = runner.invoke(main, ["unlearn", "--method", "first_weight"])
    assert res.exit_code == 2 and "first_weight" in res.output and "balanced_subnet" in res.output
    with pytest.raises(ValueError, match="unknown unlearning method 'first_weight'"):
        get_method("first_weight")


def test_every_registered_config_is_a_top_level_export():
    for method in METHODS.values():
        name = method.config_class.__name__
        assert getattr(hf_memmit, name) is method.config_class and name in hf_memmit.__all__


def test_register_method_refuses_bad_declarations():
    class NotAConfig:
        method = "x"

    with pytest.raises(TypeError, match="not a method config"):
        register_method(NotAConfig, lambda *a, **k: None)
    with pytest.raises(TypeError, match="callables"):
        register_method(GreedyConfig, None)

    class OtherGreedy(GreedyConfig):
        pass

    with pytest.raises(ValueError, match="'greedy' is already registered by GreedyConfig"):
        register_method(OtherGreedy, lambda *a, **k: None)
    assert get_method("greedy").config_class is GreedyConfig
