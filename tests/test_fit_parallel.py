"""Data-parallel fitting: under `accelerate launch` with 2 CPU processes (gloo) every process fits its slice of
each step's batch and the gradients are summed, so the adapter equals the one-process fit at the same global
batch: the same masks bit for bit, LoRA weights equal to float rounding, the same stopping checks."""

import json

import pytest
import torch
from _fit_worker import CASES, fit
from _launch import ROOT, accelerate_launch
from _tiny_models import one_thread
from safetensors.torch import load_file

from hf_memmit.unlearning import get_method
from hf_memmit.unlearning.parallel import ONE_PROCESS, Split
from hf_memmit.unlearning.registry import METHODS


@pytest.fixture(scope="module")
def two_process_fits(tmp_path_factory):
    out = tmp_path_factory.mktemp("fits")
    accelerate_launch([ROOT / "tests/_fit_worker.py", out], timeout=600)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_fit_the_adapter_of_one(name, two_process_fits):
    with one_thread():
        tensors, log = fit(name)
    found = json.loads((two_process_fits / "logs.json").read_text())
    assert found["world"] == 2
    theirs = load_file(two_process_fits / f"{name}.safetensors")
    assert sorted(theirs) == sorted(k.replace(".", "/") for k in tensors)
    for key, ours in tensors.items():
        other = theirs[key.replace(".", "/")]
        if ours.dtype == torch.uint8:  # a mask: the same weights masked
            assert torch.equal(other, ours), f"{key}: {int((other != ours).sum())} mask entries differ"
        else:
            # the gradient sums run in another order, and Adam carries the rounding over 6 epochs: a few 1e-6 apart
            # here (a fit without the all-reduce is up to 4e-2 off)
            torch.testing.assert_close(other, ours, rtol=1e-3, atol=2e-5)
    if ours.dtype == torch.uint8:
        assert 0 < int((1 - ours).sum()) < ours.numel()
    assert json.loads(json.dumps(log)) == found["logs"][name]  # the same checks at the same steps


@pytest.mark.slow
def test_zero3_fit_on_two_processes_gives_the_masks_of_one(tmp_path):
    """DeepSpeed ZeRO-3 on 2 CPU processes: every parameter, the scores included, partitioned over the two and
    gathered layer by layer; the masks and stopping checks equal the one-process fit at the same global batch,
    also with steps that leave a process no row (it runs one dummy row whose loss is left out)."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed: pip install deepspeed==0.19.8 "
                                             "(after torch, so pip keeps the CPU build)")
    from _zero3_worker import ZERO3_CASES, zero3_fit

    accelerate_launch([ROOT / "tests/_zero3_worker.py", tmp_path], timeout=600)
    found = json.loads((tmp_path / "logs.json").read_text())
    assert found["world"] == 2 and all(found["partitioned"].values())
    assert "'durable' does not fit under DeepSpeed" in found["refused"] and "subnet" in found["refused"]
    for name in ZERO3_CASES:
        with one_thread():
            tensors, log, _ = zero3_fit(name)
        theirs = load_file(tmp_path / f"{name}.safetensors")
        for key, ours in tensors.items():
            other = theirs[key.replace(".", "/")]
            assert torch.equal(other, ours), f"{name} {key}: {int((other != ours).sum())} mask entries differ"
        assert 0 < sum(int((1 - t).sum()) for t in tensors.values())
        assert json.loads(json.dumps(log)) == found["logs"][name]


def test_the_trained_methods_split_their_work():
    assert {n for n in ("subnet", "balanced_subnet", "gradient_ascent", "grad_diff", "npo", "simnpo")
            if get_method(n).data_parallel} == {"subnet", "balanced_subnet", "gradient_ascent", "grad_diff", "npo",
                                                "simnpo"}
    assert not get_method("durable").data_parallel
    assert {n for n, m in METHODS.items() if m.deepspeed} == {"subnet", "balanced_subnet"}


def test_one_process_split_is_the_identity():
    index = torch.tensor([4, 1, 3])
    values = torch.tensor([1.0, 2.0, 6.0])
    assert ONE_PROCESS.part(index) is index and ONE_PROCESS.total(5) == 5
    assert ONE_PROCESS.mean(values, 3).item() == 3.0 and Split(None).processes == 1
