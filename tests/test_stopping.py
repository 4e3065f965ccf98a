"""Step-scheduled unlearning with a stopping check: fit until the forget rows are no longer extractable."""

import warnings

import pytest
import torch
from _tiny_models import one_thread, tiny_llama, token_rows
from datasets import Dataset

from hf_memmit import BalancedSubnetConfig, SubnetConfig, greedy_match, unlearn

K = 4


def memorizing_llama(rows: torch.Tensor, steps: int = 300):
    """A tiny Llama trained on `rows` until greedy decoding reproduces each one from its first K tokens."""
    model = tiny_llama()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=rows, labels=rows).loss.backward()
        optimizer.step()
    return model.eval()


def extractable(model, rows: torch.Tensor) -> int:
    return int(greedy_match(model, rows[:, :K], rows[:, K:]).exact.sum())


def as_dataset(rows: torch.Tensor, prefix: str) -> Dataset:
    return Dataset.from_dict({"input_ids": rows.tolist(), "prompt_length": [K] * len(rows),
                              "id": [f"{prefix}{i}" for i in range(len(rows))]})


@pytest.fixture(scope="module")
def memorized():
    with one_thread():
        forget, retain = token_rows(6, seed=3), token_rows(6, seed=4)
        model = memorizing_llama(torch.cat([forget, retain]))
        assert extractable(model, forget) == 6 and extractable(model, retain) == 6
        return model.state_dict(), forget, retain


def fresh(state):
    model = tiny_llama()
    model.load_state_dict(state)
    return model


def test_stops_once_forget_rows_are_not_extractable(memorized):
    state, forget, retain = memorized
    config = BalancedSubnetConfig(ratio=0.3, epochs=None, max_steps=400, forget_check_every=5, batch_size=4)
    with one_thread():
        model = unlearn(fresh(state), config, as_dataset(forget, "f"), as_dataset(retain, "r"), progress=False)
        log = model.unlearning_log
        assert log["stopped_at"] is not None and log["stopped_at"] < 400 and log["stopped_at"] % 5 == 0
        assert log["checks"][-1] == (log["stopped_at"], 0)
        assert all(left > 0 for _, left in log["checks"][:-1])  # it did not stop at an earlier check
        assert extractable(model, forget) == 0  # the frozen mask keeps what the last check saw


def test_warns_when_the_schedule_ends_first(memorized):
    state, forget, _ = memorized
    config = SubnetConfig(ratio=1e-4, epochs=None, max_steps=4, forget_check_every=2, batch_size=2)
    with one_thread(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = unlearn(fresh(state), config, as_dataset(forget, "f"), progress=False)
    assert model.unlearning_log["stopped_at"] is None
    assert [step for step, _ in model.unlearning_log["checks"]] == [2, 4]
    assert any("still extractable" in str(w.message) and "max_steps=4" in str(w.message) for w in caught)


def test_without_a_check_the_schedule_is_unchanged(memorized):
    """forget_check_every=None runs exactly epochs x batches steps, as before the option existed."""
    state, forget, retain = memorized
    config = BalancedSubnetConfig(ratio=0.3, epochs=2, batch_size=4)
    with one_thread():
        a = unlearn(fresh(state), config, as_dataset(forget, "f"), as_dataset(retain, "r"), progress=False)
        b = unlearn(fresh(state), config, forget, retain, progress=False)
    assert not hasattr(a, "unlearning_log")
    x = torch.cat([forget, retain])
    with torch.no_grad():
        assert torch.equal(a(x).logits, b(x).logits)


def test_step_schedule_needs_max_steps_and_check_needs_prompt_lengths(memorized):
    state, forget, _ = memorized
    with pytest.raises(ValueError, match="max_steps"):
        SubnetConfig(epochs=None)
    with pytest.raises(ValueError, match="forget_check_every=0"):
        SubnetConfig(forget_check_every=0)
    with pytest.raises(ValueError, match="prompt_length"):
        unlearn(fresh(state), SubnetConfig(forget_check_every=2), forget, progress=False)


def test_sampled_checks_look_at_all_rows_before_stopping(memorized):
    """With forget_check_rows, a check samples that many rows; the whole set is checked (and fitting stops)
    only when a sample has none extractable, so the stop still means no forget row is extractable."""
    state, forget, retain = memorized
    config = BalancedSubnetConfig(ratio=0.3, epochs=None, max_steps=400, forget_check_every=5, forget_check_rows=2,
                                  batch_size=4)
    with one_thread():
        model = unlearn(fresh(state), config, as_dataset(forget, "f"), as_dataset(retain, "r"), progress=False)
        log = model.unlearning_log
        assert log["sample_rows"] == 2 and log["stopped_at"] is not None
        assert log["checks"][-1] == (log["stopped_at"], 0)
        assert all(hits > 0 and size == 2 for _, hits, size in log["sampled_checks"])
        full_steps = {step for step, _ in log["checks"]}
        assert not full_steps & {step for step, _, _ in log["sampled_checks"]}
        assert extractable(model, forget) == 0
    with pytest.raises(ValueError, match="forget_check_rows=0"):
        SubnetConfig(forget_check_rows=0)
