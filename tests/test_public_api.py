"""The public face: `import hf_memmit` stays cheap (no `datasets`, no `evaluate`) yet registers the adapter
types with peft; every exported name resolves; internals stay in their subpackages."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hf_memmit

ROOT = Path(__file__).resolve().parent.parent


def test_plain_import_loads_no_datasets_or_evaluate_and_registers_the_adapter_types():
    # huggingface_hub is not checked: transformers (through peft) imports it already
    script = textwrap.dedent("""
        import sys
        import hf_memmit
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING
        assert PEFT_TYPE_TO_CONFIG_MAPPING["WEIGHT_MASK"].__name__ == "WeightMaskConfig"
        assert PEFT_TYPE_TO_CONFIG_MAPPING["NEURON_MASK"].__name__ == "NeuronMaskConfig"
        print(sorted(m for m in ("datasets", "evaluate") if m in sys.modules))
        from hf_memmit import BalancedSubnetConfig, unlearn  # a method config still comes from the top level
        print(BalancedSubnetConfig.__module__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False,
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split("\n")[:2] == ["[]", "hf_memmit.unlearning.weight.balanced_subnet"], done.stdout


def test_every_exported_name_resolves_from_its_subpackage():
    names = hf_memmit.__all__
    assert {"unlearn", "MemorizationResult", "GreedyMatch", "TinyMemCheckpoint", "ZeroConfig"} <= set(names)
    namespace = {}
    exec("from hf_memmit import *", namespace)  # noqa: S102  (the star import itself is what is tested)
    assert set(names) <= set(namespace)
    assert hf_memmit.MemSinksTrainer is __import__("hf_memmit.trainers", fromlist=["x"]).MemSinksTrainer
    assert set(names) <= set(dir(hf_memmit))


@pytest.mark.parametrize("name, home", [("METHODS", "hf_memmit.unlearning"), ("make_config", "hf_memmit.unlearning"),
                                        ("match_tokens", "hf_memmit.metrics"), ("suite_model_name", "hf_memmit.hub")])
def test_internals_live_in_their_subpackages_only(name, home):
    assert name not in hf_memmit.__all__
    with pytest.raises(AttributeError, match=f"has no attribute '{name}'"):
        getattr(hf_memmit, name)
    assert getattr(__import__(home, fromlist=[name]), name) is not None
