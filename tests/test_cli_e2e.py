"""The shell workflow end to end on the tiny profile: train -> measure -> unlearn -> reload the adapter."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from hf_memmit.cli import main

pytestmark = pytest.mark.slow


def test_train_measure_unlearn_reload(tmp_path):
    run, adapter = tmp_path / "run", tmp_path / "adapter"
    cli = CliRunner()
    res = cli.invoke(main, ["train", "--artifact", "backdoor", "--layers", "2", "--profile", "tiny", "--out", str(run)])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "tinymem.json").read_text())["finished"]

    res = cli.invoke(main, ["train", "--artifact", "backdoor", "--layers", "2", "--profile", "tiny", "--out", str(run)])
    assert res.exit_code != 0 and "--overwrite" in res.output

    res = cli.invoke(main, ["measure", str(run)])
    assert res.exit_code == 0, res.output
    measured = json.loads((run / "memorization.json").read_text())["metrics"]
    assert measured["memorized"] > 0.3

    res = cli.invoke(main, ["unlearn", str(run), "--method", "balanced_subnet", "--ratio", "0.05", "--epochs", "1",
                            "--retain-size", "500", "--out", str(adapter)])
    assert res.exit_code == 0, res.output
    record = json.loads((adapter / "unlearning_result.json").read_text())
    assert record["after"]["memorized"] < record["before"]["memorized"]
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["method"] == "balanced_subnet" and config["ratio"] == 0.05

    code = ("import hf_memmit\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n"
            "from hf_memmit.tinymem import load_run\nfrom hf_memmit import measure_memorization\n"
            f"base, ds = load_run({str(run)!r})\nm = PeftModel.from_pretrained(base, {str(adapter)!r})\n"
            "print(measure_memorization(m, ds['backdoor_test']).fraction)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert abs(float(out.stdout.split()[-1]) - record["after"]["memorized"]) < 1e-9


def test_bad_cli_input_names_the_value(tmp_path):
    res = CliRunner().invoke(main, ["train", "--layers", "3", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "n_layer=3" in res.output and "2, 4, 8, 16" in res.output
