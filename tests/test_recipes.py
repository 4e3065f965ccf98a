"""The MemSinks recipe end to end on a tiny model: in-process (python), 2 CPU ranks (accelerate), DeepSpeed."""

import importlib.util
import json

import pytest
from _launch import ROOT, accelerate_launch

RECIPE = ROOT / "recipes" / "memsinks_smollm.py"
TINY = ["--preset", "tiny", "--vocab-top", "1024", "--n-corpus", "600", "--n-general", "150", "--n-repeated", "6",
        "--repeats", "3", "--n-heldout", "6", "--n-validation", "12", "--batch-size", "8", "--block-size", "128",
        "--k", "16", "--l", "16", "--threads", "1"]


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
