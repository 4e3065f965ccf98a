"""Unlearning on a TinyMem model that really memorized (the session fixture `tiny_trained`, math+backdoor):
memorization measurably falls while accuracy holds, for one method of each family (weight-level trained mask:
BalancedSubnet, Subnet; neuron-level: ACT; weight-level importance: Durable).

Measured on that model (2 layers, seed 0; 86 of 100 forget rows and 9 of 11 held-out backdoor rows memorized,
accuracy 0.845); the bounds below leave a margin around these numbers:
- ACT ratio 0.01: forget 0.86 -> 0.01, held-out 0.82 -> 0.00, accuracy 0.845 -> 0.845 (0.3 s);
- Subnet ratio 0.1, 10 epochs: forget 0.86 -> 0.00, held-out 0.82 -> 0.00, accuracy 0.845 -> 0.816 (7 s);
  at its defaults (ratio 0.05, 5 epochs) only 0.86 -> 0.69;
- Durable ratio 0.2: forget 0.86 -> 0.29, held-out 0.82 -> 0.27, accuracy 0.845 -> 0.810 (about a second);
  smaller masks barely move it (ratio 0.01: 0.86 -> 0.88; 0.05: -> 0.84; 0.1: -> 0.76), nor does
  DurableAgg at 0.01 (-> 0.87) or Greedy at 1e-3 (-> 0.72).
"""

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


def _before_after(memorized, method, retain=True, **settings):
    run, dataset, forget, retain_rows, acc_before = memorized
    model = unlearn(_fresh(run), make_config(method, **settings), forget, retain_rows if retain else None,
                    progress=False)
    return _state(model, dataset), acc_before


def test_act_neuron_level_removes_the_backdoor_and_keeps_accuracy(memorized):
    (held_out, train_rows, acc_after), acc_before = _before_after(memorized, "act", retain=False, ratio=0.01)
    assert held_out.fraction <= 0.1 and train_rows.fraction <= 0.1, (held_out.fraction, train_rows.fraction)
    assert acc_after >= acc_before - 0.02, (acc_before, acc_after)


def test_subnet_removes_the_backdoor_and_keeps_accuracy(memorized):
    (held_out, train_rows, acc_after), acc_before = _before_after(memorized, "subnet", retain=False, ratio=0.1,
                                                                epochs=10)
    assert held_out.fraction <= 0.1 and train_rows.fraction <= 0.1, (held_out.fraction, train_rows.fraction)
    assert acc_after >= acc_before - 0.05, (acc_before, acc_after)  # measured: -0.03


def test_durable_weight_importance_lowers_memorization_within_an_accuracy_bound(memorized):
    # weight-level importance masks need a large ratio on this 2-layer model (see the module docstring)
    (held_out, train_rows, acc_after), acc_before = _before_after(memorized, "durable", retain=False, ratio=0.2)
    assert held_out.fraction <= 0.45 and train_rows.fraction <= 0.45, (held_out.fraction, train_rows.fraction)
    assert acc_after >= acc_before - 0.06, (acc_before, acc_after)  # measured: -0.035
