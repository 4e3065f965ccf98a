"""Unlearning on a TinyMem model that really memorized (the session fixture `tiny_trained`, math+backdoor):
memorization measurably falls while accuracy holds."""

import pytest

from hf_memmit import measure_memorization, token_accuracy, unlearn
from hf_memmit.unlearning import make_config


def _state(model, dataset):
    held_out = measure_memorization(model, dataset["backdoor_test"])
    train_rows = measure_memorization(model, dataset["forget"])
    acc = token_accuracy(model, dataset["test"], pad_token_id=13)["average"]["accuracy"]
    return held_out, train_rows, acc


@pytest.fixture(scope="module")
def memorized(tiny_trained):
    model, dataset, run = tiny_trained
    held_out, train_rows, acc = _state(model, dataset)
    # the fixture must really have memorized, or the tests below prove nothing
    assert held_out.fraction >= 0.5 and train_rows.fraction >= 0.5, (held_out.fraction, train_rows.fraction)
    assert acc >= 0.8
    forget = dataset["forget"].select(train_rows.memorized_indices)
    retain = dataset["retain"].shuffle(seed=0).select(range(500))
    return run, dataset, forget, retain, acc


def _fresh(run):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(run)


def test_balanced_subnet_removes_the_backdoor_and_keeps_accuracy(memorized):
    run, dataset, forget, retain, acc_before = memorized
    model = unlearn(_fresh(run), make_config("balanced_subnet", ratio=0.05, epochs=1), forget, retain, progress=False)
    held_out, train_rows, acc_after = _state(model, dataset)
    assert held_out.fraction <= 0.1 and train_rows.fraction <= 0.05, (held_out.fraction, train_rows.fraction)
    assert acc_after >= acc_before - 0.02, (acc_before, acc_after)
    # switching the adapter off gives the memorizing model back
    with model.disable_adapter():
        assert measure_memorization(model, dataset["forget"]).fraction >= 0.5


def test_merged_model_keeps_the_edit(memorized, tmp_path):
    run, dataset, forget, retain, _ = memorized
    model = unlearn(_fresh(run), make_config("balanced_subnet", ratio=0.05, epochs=1), forget, retain, progress=False)
    before_merge = measure_memorization(model, dataset["forget"])
    plain = model.merge_and_unload()
    assert type(plain).__name__ == "GPT2LMHeadModel"
    assert measure_memorization(plain, dataset["forget"]).flags == before_merge.flags
