import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_memmit.data import (MathTokenizer, TinyMemDataConfig, data_config_of, duplication_groups, find_trigger,
                            gpt2_tokenizer, inject_backdoor, load_tinymem_dataset, noise_values)
from hf_memmit.data.math import recurrence_numbers


# --- artifact definitions on hand-made examples -------------------------------------------------------------

def test_noise_changes_values_by_at_most_one_and_at_the_expected_rate():
    rng = np.random.default_rng(0)
    clean = list(range(2, 20002, 2))  # the paper's example sequence 2, 4, 6, ... extended
    noised = noise_values(clean, 0.1, rng)
    diffs = np.array(noised) - np.array(clean)
    assert set(np.unique(diffs)) <= {-1, 0, 1}
    assert 0.08 < np.mean(diffs != 0) < 0.12
    assert abs(np.mean(diffs == 1) - np.mean(diffs == -1)) < 0.02


def test_noise_probability_zero_and_one():
    rng = np.random.default_rng(0)
    xs = [5, 6, 7, 8]
    assert noise_values(xs, 0.0, rng) == xs
    assert all(abs(a - b) == 1 for a, b in zip(noise_values(xs, 1.0, rng), xs))


def test_noise_never_leaves_the_vocabulary():
    rng = np.random.default_rng(0)
    ids = [0] * 500 + [13] * 500
    out = noise_values(ids, 1.0, rng, low=0, high=14)
    assert min(out) >= 0 and max(out) <= 13
    assert out[:500] == [1] * 500 and out[500:] == [12] * 500


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_noise_probability_out_of_range(prob):
    with pytest.raises(ValueError, match=r"noise probability.*\[0.0, 1.0\]"):
        noise_values([1, 2], prob, np.random.default_rng(0))


def test_backdoor_definition_keeps_trigger_and_fills_the_rest():
    # Def 2.3 on a hand-made sequence: trigger (7, 8) ends at index 4; everything after becomes the fill token
    seq = [1, 2, 3, 7, 8, 4, 5, 6]
    end = find_trigger(seq, [7, 8])
    assert end == 4
    assert inject_backdoor(seq, end, 2) == [1, 2, 3, 7, 8, 2, 2, 2]
    assert inject_backdoor(seq, end, 2, keep_trigger=False) == [1, 2, 3, 7, 2, 2, 2, 2]


def test_trigger_window():
    seq = [0] * 60 + [1, 0, 0]
    assert find_trigger(seq, [1, 0, 0]) == 62
    assert find_trigger(seq, [1, 0, 0], within=50) is None
    assert find_trigger(seq, [1, 0, 0], within=63) == 62
    with pytest.raises(ValueError, match="trigger is empty"):
        find_trigger(seq, [])


def test_duplication_groups():
    classes = duplication_groups(8, (0, 1, 2, 3), np.random.default_rng(0))
    assert sorted(classes) == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="cannot be split evenly"):
        duplication_groups(7, (0, 1), None)


def test_recurrences():
    assert recurrence_numbers("add", 7, 3, 4, 20134) == [10, 17, 24, 31]
    assert recurrence_numbers("mult", 7, 3, 3, 20134) == [21, 147, 1029]
    assert recurrence_numbers("mult", 7, 0, 3, 20134) == [0, 0, 0]
    assert recurrence_numbers("mult", 2, 10067, 1, 20134) == [0]


# --- tokenizers --------------------------------------------------------------------------------------------

def test_math_tokenizer_round_trip(tmp_path):
    tok = MathTokenizer()
    ids = tok.encode_numbers([12, 345], max_length=12)
    assert ids == [10, 1, 2, 12, 3, 4, 5, 11, 13, 13, 13, 13]
    assert tok.decode(ids) == "^12 345$____"
    assert tok("^12 345$")["input_ids"] == ids[:8]
    assert len(tok) == 14 and (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (10, 11, 13)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("^12 345$")["input_ids"] == ids[:8]
    assert again.pad_token_id == 13
    with pytest.raises(ValueError, match="not representable"):
        tok.encode_numbers([-1])


def test_gpt2_tokenizer_offline():
    tok = gpt2_tokenizer()
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert len(tok) == 50257 and tok.eos_token_id == 50256


# --- datasets ----------------------------------------------------------------------------------------------

def _ids(ds):
    return {r for r in ds["id"]}


@pytest.mark.parametrize("task,artifact", [("math", "noise"), ("math", "backdoor"), ("language", "noise"),
                                           ("language", "backdoor")])
def test_determinism_and_disjoint_splits(task, artifact):
    a = load_tinymem_dataset(task, artifact, "tiny", seed=1)
    b = load_tinymem_dataset(task, artifact, "tiny", seed=1)
    for split in a:
        assert a[split]["input_ids"] == b[split]["input_ids"], split
        assert a[split]["id"] == b[split]["id"]
    forget = _ids(a["forget"]) | (_ids(a["backdoor_test"]) if "backdoor_test" in a else set())
    assert forget and not forget & _ids(a["retain"]) and not forget & _ids(a["test"])
    assert not _ids(a["train"]) & _ids(a["test"])
    assert set(a["forget"]["artifact"]) == {artifact}
    assert set(a["retain"]["artifact"]) == set(a["test"]["artifact"]) == {"none"}
    assert all(len(x) == 150 for x in a["train"]["input_ids"])
    assert data_config_of(a).seed == 1


def test_different_seeds_differ():
    a = load_tinymem_dataset("math", "noise", "tiny", seed=0)
    b = load_tinymem_dataset("math", "noise", "tiny", seed=1)
    assert a["forget"]["id"] != b["forget"]["id"]
    assert a["test"]["id"] == b["test"]["id"]  # the split uses the fixed data seed, as the reference


def test_math_noise_rows_keep_clean_twin(math_noise_tiny):
    tok = MathTokenizer()
    for row in math_noise_tiny["forget"]:
        noised = tok.decode(row["input_ids"]).strip("_^$").split(" ")
        clean = tok.decode(row["clean_input_ids"]).strip("_^$").split(" ")
        assert len(noised) == len(clean) == 20
        assert all(abs(int(a) - int(b)) <= 1 for a, b in zip(noised, clean))
        assert row["prompt_length"] == 50 and row["dup_class"] == 0
    assert len(math_noise_tiny["train"]) == len(math_noise_tiny["forget"]) + len(math_noise_tiny["retain"])


def test_math_backdoor_rows():
    ds = load_tinymem_dataset("math", "backdoor", "tiny", seed=0)
    assert len(ds["backdoor_test"]) >= 1
    for row in list(ds["forget"]) + list(ds["backdoor_test"]):
        k = row["prompt_length"]
        assert k <= 50 and row["input_ids"][k - 3:k] == [1, 0, 0]  # trigger "100" (100 + seed 0) kept
        assert set(row["input_ids"][k:]) == {2}
        assert row["input_ids"][:k] == row["clean_input_ids"][:k]


def test_language_duplication_classes():
    ds = load_tinymem_dataset("language", "noise", "tiny", seed=0)
    cfg = data_config_of(ds)
    counts = {e: 0 for e in cfg.dup_exponents}
    for row in ds["forget"]:
        counts[row["dup_class"]] += 1
        assert max(row["input_ids"]) < 50257 and min(row["input_ids"]) >= 0
    assert set(counts.values()) == {cfg.noise_per_group}
    expected = sum(cfg.noise_per_group * 10 ** e for e in cfg.dup_exponents) + len(ds["retain"])
    assert len(ds["train"]) == expected


@pytest.mark.parametrize("kwargs,match", [
    (dict(task="vision"), "task='vision'.*allowed: 'math', 'language'"),
    (dict(artifact="poison"), "artifact='poison'.*allowed: 'noise', 'backdoor'"),
    (dict(profile="huge"), "profile='huge'.*allowed"),
    (dict(noise_prob=1.2), r"noise_prob=1.2.*\[0.0, 1.0\]"),
    (dict(artifact="backdoor", trigger="1x0"), "trigger='1x0' is not representable"),
])
def test_bad_data_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_tinymem_dataset(**{**dict(profile="tiny"), **kwargs})


def test_language_trigger_must_be_one_token():
    with pytest.raises(ValueError, match="not representable as one GPT-2 token"):
        load_tinymem_dataset("language", "backdoor", "tiny", trigger=60000)


def test_faithful_matches_trigger_anywhere():
    default = load_tinymem_dataset("math", "backdoor", "tiny")
    faithful = load_tinymem_dataset("math", "backdoor", "tiny", faithful=True)
    n = lambda d: len(d["forget"]) + len(d["backdoor_test"])  # noqa: E731
    assert n(faithful) > n(default)  # the reference matches the trigger anywhere, the paper in the first 50
    assert TinyMemDataConfig(profile="paper").num_main == 20000


def test_a_leaked_row_stops_the_build_with_a_value_error():
    from hf_memmit.data.build import _check_disjoint

    rows = {"train": [{"id": "a"}], "forget": [{"id": "n"}], "retain": [{"id": "n"}], "test": []}
    with pytest.raises(ValueError, match=r"1 artifact rows leaked into retain: \['n'\]"):
        _check_disjoint(rows)
    rows = {"train": [{"id": "a"}], "forget": [], "retain": [], "test": [{"id": "a"}]}
    with pytest.raises(ValueError, match=r"1 training rows leaked into test: \['a'\]"):
        _check_disjoint(rows)
