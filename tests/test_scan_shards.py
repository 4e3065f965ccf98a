"""The sharded (k, l) check: one process equals `greedy_match`, two processes (accelerate launch, gloo) equal one,
and a killed scan resumes from its finished shards."""

import json
from pathlib import Path

import pytest
import torch
from _launch import ROOT, accelerate_launch
from _scan_worker import windows
from _tiny_models import memorizer_of, one_thread

from hf_memmit.metrics import greedy_match, shards
from hf_memmit.metrics.shards import sharded_greedy_match


@pytest.fixture(scope="module")
def case():
    with one_thread():
        rows, prompts, targets = windows()
        return memorizer_of(rows[:12]), prompts, targets


def as_dict(match):
    return {"exact": match.exact.tolist(), "token_match": match.token_match.tolist(),
            "predictions": match.predictions}


def verdicts_dict(verdicts):
    """A sharded scan's verdicts in the form of `as_dict` (its columns are named as in a ScanResult)."""
    cols = verdicts[:]
    return {"exact": cols["extractable"], "token_match": cols["token_match"], "predictions": cols["predicted_ids"]}


def test_one_process_equals_greedy_match(case):
    model, prompts, targets = case
    with one_thread():
        whole = greedy_match(model, prompts, targets, batch_size=2)
        sharded = sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, progress=False)
    assert 0 < int(whole.exact.sum()) < len(prompts)
    assert verdicts_dict(sharded) == as_dict(whole)


def test_a_killed_scan_resumes_from_its_shards(case, tmp_path, monkeypatch):
    model, prompts, targets = case
    calls = []
    real = shards.greedy_match
    monkeypatch.setattr(shards, "greedy_match", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    with one_thread():
        first = sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, shard_dir=tmp_path,
                                     progress=False)
        assert calls == [4] * 6 and len(list(tmp_path.glob("shard-*.json"))) == 6
        for i in (1, 4):  # as if killed before these two shards were written
            (tmp_path / f"shard-{i:06d}.json").unlink()
        calls.clear()
        resumed = sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, shard_dir=tmp_path,
                                       progress=False)
    assert calls == [4, 4] and verdicts_dict(resumed) == verdicts_dict(first)


def test_shards_of_another_scan_are_refused(case, tmp_path):
    model, prompts, targets = case
    with one_thread():
        sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, shard_dir=tmp_path, progress=False)
        with pytest.raises(ValueError, match="holds the shards of another scan.*windows_sha256"):
            sharded_greedy_match(model, prompts[::-1], targets[::-1], batch_size=2, shard_size=4, shard_dir=tmp_path,
                                 progress=False)
        with pytest.raises(ValueError, match="shard_size=0 is not supported|shard_size=0.*integer >= 1"):
            sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=0, progress=False)


def _launch_worker(out: Path, shard_dir: Path | None = None) -> dict:
    accelerate_launch([ROOT / "tests/_scan_worker.py", out, *([shard_dir] if shard_dir else [])])
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_cpu_processes_equal_one(case, tmp_path):
    model, prompts, targets = case
    with one_thread():
        single = verdicts_dict(sharded_greedy_match(model, prompts, targets, batch_size=2, shard_size=4, progress=False))
    two = _launch_worker(tmp_path / "two.json")
    assert two.pop("world") == 2 and two == single
    # a 2-process scan killed after some shards: the shards written so far are kept and the rest are checked
    shard_dir = tmp_path / "shards"
    _launch_worker(tmp_path / "first.json", shard_dir)
    for i in (0, 3, 5):
        (shard_dir / f"shard-{i:06d}.json").unlink()
    resumed = _launch_worker(tmp_path / "resumed.json", shard_dir)
    assert resumed.pop("world") == 2 and resumed == single
    assert torch.tensor(single["exact"]).any()
