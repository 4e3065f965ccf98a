"""The MemSinks recipe end to end on a tiny model: in-process (python), 2 CPU ranks (accelerate), DeepSpeed."""

import importlib.util
import json

import pytest
from _launch import ROOT, accelerate_launch

RECIPE = ROOT / "recipes" / "memsinks_smollm.py"
TINY = ["--preset", "tiny", "--vocab-top", "1024", "--n-corpus", "600", "--n-general", "150", "--n-repeated", "6",
        "--repeats", "3", "--n-heldout", "6", "--n-validation", "12", "--batch-size", "8", "--block-size", "128",
        "--k", "16", "--l", "16", "--threads", "1", "--repeated-source", "wikipedia"]  # one domain (austen: below)


def _recipe():
    spec = importlib.util.spec_from_file_location("memsinks_smollm", RECIPE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_three_modes_and_compare(tmp_path):
    recipe = _recipe()
    runs = {}
    for mode in ("standard", "memsinks", "dedup"):
        runs[mode] = recipe.main(["--mode", mode, "--out", str(tmp_path / mode), "--max-steps", "3", *TINY])
        assert (tmp_path / mode / f"memsinks_{mode}.md").exists()
        assert (tmp_path / mode / "model" / "model.safetensors").exists()
    assert set(runs["memsinks"]["metrics"]) == {"sinks_on", "sinks_dropped_none", "sinks_dropped_code",
                                                "sinks_dropped_mass", "own_sinks"}
    assert set(runs["standard"]["metrics"]) == {"plain"}
    # the same data and seed: standard and memsinks see the same documents, dedup fewer repeats
    assert runs["standard"]["data"] == runs["memsinks"]["data"]
    m = runs["memsinks"]["metrics"]["sinks_dropped_none"]
    assert m["kl_memorized"]["total"] == 6
    # every eval mode computes another model (sinks on, dropped with each rescale, own sinks): a mode switch
    # that did nothing would repeat a loss
    losses = [metrics["L_rep"] for metrics in runs["memsinks"]["metrics"].values()]
    assert len(set(losses)) == len(losses) == 5
    result = recipe.main(["--mode", "compare", "--runs", *(str(tmp_path / k) for k in ("standard", "memsinks",
                                                                                       "dedup")),
                          "--out", str(tmp_path / "memsinks_table")])
    assert set(result["acceptance"]) == {"gap_closure", "gap_closure_ok", "L_val_within_2pct",
                                         "L_val_better_than_dedup"}
    # the table reads each run's own numbers: closure = 1 - G / G_standard with the runs' gaps
    table = json.loads((tmp_path / "memsinks_table.json").read_text())["table"]
    g_std = runs["standard"]["metrics"]["plain"]["gap"]
    assert table["dedup"]["gap"] == runs["dedup"]["metrics"]["plain"]["gap"]
    for name, metrics in runs["memsinks"]["metrics"].items():
        assert table[f"memsinks {name}"]["gap_closure"] == pytest.approx(1 - metrics["gap"] / g_std)
    assert result["acceptance"]["gap_closure"] == table["memsinks sinks_dropped_none"]["gap_closure"]
    saved = json.loads((tmp_path / "memsinks" / "model" / "config.json").read_text())
    assert saved["tied_dropout"]["p_gen"] == 0.7  # the checkpoint remembers its sinks


def test_recipe_standard_mode_with_goldfish_loss(tmp_path):
    """--goldfish-k trains standard mode with the Goldfish loss on the same data: other weights, same documents."""
    recipe = _recipe()
    plain = recipe.main(["--mode", "standard", "--out", str(tmp_path / "plain"), "--max-steps", "2", *TINY])
    goldfish = recipe.main(["--mode", "standard", "--goldfish-k", "4", "--out", str(tmp_path / "goldfish"),
                            "--max-steps", "2", *TINY])
    assert goldfish["data"] == plain["data"]
    assert goldfish["metrics"]["plain"]["L_rep"] != plain["metrics"]["plain"]["L_rep"]
    with pytest.raises(SystemExit):
        recipe.parse_args(["--mode", "memsinks", "--goldfish-k", "4", "--out", str(tmp_path / "x")])


def test_recipe_two_domains(tmp_path, monkeypatch):
    """--repeated-source austen: repeated, held-out and validation documents are Austen passages, the general
    corpus Wikipedia with its own validation set (L_val_general in every eval mode); deterministic per seed."""
    monkeypatch.setenv("HF_MEMMIT_CACHE", str(tmp_path / "cache"))
    recipe = _recipe()
    from hf_memmit.data import austen_passages, gpt2_tokenizer, wiki_offline_texts

    tok = gpt2_tokenizer()
    argv = ["--out", str(tmp_path / "x"), "--n-corpus", "600", "--n-repeated", "6", "--n-heldout", "6",
            "--n-validation", "12", "--repeated-source", "austen"]
    splits = recipe.offline_splits(recipe.parse_args(argv), tok)
    austen = {tuple(d) for d in recipe._encode(tok, austen_passages(), 256)}
    wiki = {tuple(d) for d in recipe._encode(tok, wiki_offline_texts()[:600], 256)}
    for name, corpus, n in (("repeated", austen, 6), ("heldout", austen, 6), ("validation", austen, 12),
                            ("validation_general", wiki, 12), ("general", wiki, 600 - 12)):
        assert len(splits[name]) == n and all(tuple(d) in corpus for d in splits[name]), name
    assert not {tuple(d) for d in splits["repeated"]} & {tuple(d) for d in splits["heldout"] + splits["validation"]}
    assert recipe.offline_splits(recipe.parse_args(argv), tok) == splits
    assert recipe.offline_splits(recipe.parse_args([*argv, "--seed", "1"]), tok)["repeated"] != splits["repeated"]

    run = recipe.main(["--mode", "memsinks", "--out", str(tmp_path / "ms"), "--max-steps", "2", *TINY,
                       "--repeated-source", "austen"])
    assert run["data"]["source"] == "austen repeated in wikipedia (offline)"
    assert all("L_val_general" in m for m in run["metrics"].values())
    assert run["command"].startswith("python recipes/memsinks_smollm.py --mode memsinks --out ")
    assert "| L_val_general |" in (tmp_path / "ms" / "memsinks_memsinks.md").read_text()
    for mode in ("standard", "dedup"):
        recipe.main(["--mode", mode, "--out", str(tmp_path / mode), "--max-steps", "2", *TINY,
                     "--repeated-source", "austen"])
    result = recipe.main(["--mode", "compare", "--runs", *(str(tmp_path / k) for k in ("standard", "ms", "dedup")),
                          "--out", str(tmp_path / "table")])
    # the validation-loss claims also on the general corpus, each from its own numbers
    head, std = run["metrics"]["sinks_dropped_none"], result["runs"]["standard"]["metrics"]["plain"]
    assert result["acceptance"]["general_within_2pct"] == (abs(head["L_val_general"] / std["L_val_general"] - 1) <= 0.02)
    assert result["table"]["memsinks sinks_dropped_none"]["L_val_general_vs_standard"] == pytest.approx(
        head["L_val_general"] / std["L_val_general"] - 1)


@pytest.mark.slow
def test_recipe_two_cpu_ranks_agree(tmp_path):
    """accelerate launch, 2 processes over gloo (MULTI_GPU + use_cpu): a few steps, identical metrics."""
    out = tmp_path / "ddp"
    accelerate_launch([RECIPE, "--mode", "memsinks", "--out", out, "--max-steps", "3", *TINY], timeout=240)
    rank0 = json.loads((out / "metrics_rank0.json").read_text())
    rank1 = json.loads((out / "metrics_rank1.json").read_text())
    assert rank0 == rank1
    result = json.loads((out / "memsinks_memsinks.json").read_text())
    assert result["world_size"] == 2 and result["train"]["steps"] == 3
    # the command as launched, not the worker's own argv
    assert result["command"].startswith("accelerate launch --config_file ")


@pytest.mark.slow
def test_recipe_deepspeed_zero2_single_process(tmp_path):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed: pip install deepspeed==0.19.8 "
                                             "(after torch, so pip keeps the CPU build)")
    out = tmp_path / "zero2"
    accelerate_launch([RECIPE, "--mode", "memsinks", "--out", out, "--max-steps", "3", *TINY],
                      config=ROOT / "recipes/accelerate/deepspeed_zero2.yaml", timeout=300)
    ds = json.loads((out / "memsinks_memsinks.json").read_text())
    assert ds["train"]["steps"] == 3
    plain = _recipe().main(["--mode", "memsinks", "--out", str(tmp_path / "plain"), "--max-steps", "3", *TINY])
    for mode, metrics in plain["metrics"].items():  # ZeRO-2 trains the same model as a plain process
        for key in ("L_rep", "L_ho", "L_val"):
            assert ds["metrics"][mode][key] == pytest.approx(metrics[key], rel=1e-4), (mode, key)
