"""Your own model from the shell: scan -> unlearn -> merge on a tiny Llama that memorized some records, and the
bad input each command must refuse in one line."""

from __future__ import annotations

import json
import random

import pytest
import torch
from _launch import accelerate_launch
from _tiny_models import VOCAB, one_thread, tiny_llama
from click.testing import CliRunner
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from hf_memmit.cli import main

WORDS = ["<pad>", "<unk>"] + [f"w{i}" for i in range(VOCAB - 2)]
K = L = 4  # windows of 8 words; a 16-word record has 2 windows (stride k + l)


def word_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<pad>")


def random_records(n: int, seed: int, prefix: str) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i}", "text": " ".join(rng.choice(WORDS[2:]) for _ in range(16))} for i in range(n)]


def write_jsonl(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def one_line_error(result, *needles) -> None:
    assert result.exit_code != 0, result.output
    # progress bars (model loading, datasets) share stderr with the message; they are not part of it
    lines = [line for line in result.output.strip().splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny Llama folder that memorized the 4 `secret` records (not the 4 `public` ones), plus record files."""
    root = tmp_path_factory.mktemp("own_model")
    tok = word_tokenizer()
    secret, public = random_records(4, 0, "secret"), random_records(4, 1, "public")
    rows = torch.tensor([tok(r["text"])["input_ids"] for r in secret])
    with one_thread():
        model = tiny_llama()
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            optimizer.zero_grad()
            model(input_ids=rows, labels=rows).loss.backward()
            optimizer.step()
    model.eval().save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    files = {"records": write_jsonl(root / "records.jsonl", secret + public),
             "eval": write_jsonl(root / "eval.jsonl", random_records(4, 2, "eval")),
             "unseen": write_jsonl(root / "unseen.jsonl", random_records(4, 3, "unseen"))}
    return root, files


@pytest.mark.slow
def test_scan_under_accelerate_launch_equals_one_process(workspace, tmp_path):
    """`accelerate launch` (2 CPU processes) runs `hf-memmit scan` with the windows shared out: the same records
    and verdicts as one process, written once; the finished-shards folder is gone afterwards."""
    root, files = workspace
    args = ["scan", "--model", root / "model", "--data", files["records"], "--k", K, "--l", L]
    with one_thread():
        assert run(*args, "--out", tmp_path / "one").exit_code == 0
    done = accelerate_launch(["-m", "hf_memmit.cli", *args, "--out", tmp_path / "two"])
    assert done.stdout.count("4/8 records extractable") == 1  # only the main process reports
    for name in ("records.jsonl", "windows.jsonl"):
        assert (tmp_path / "two" / name).read_text() == (tmp_path / "one" / name).read_text()
    assert not (tmp_path / "two" / "shards").exists()


@pytest.mark.slow
def test_unlearn_under_accelerate_launch_equals_one_process(workspace, tmp_path):
    """`accelerate launch` (2 CPU processes) runs `hf-memmit unlearn` data-parallel: the same mask (the adapter's
    weights file, byte for byte), the same checks and verdicts as one process; saved and printed once."""
    from safetensors.torch import load_file

    root, files = workspace
    args = ["unlearn", "--model", root / "model", "--forget", files["records"], "--k", K, "--l", L,
            "--set", "ratio=0.3"]
    with one_thread():
        assert run(*args, "--out", tmp_path / "one").exit_code == 0
    done = accelerate_launch(["-m", "hf_memmit.cli", *args, "--out", tmp_path / "two"])
    assert done.stdout.count("adapter saved to") == 1  # only the main process reports
    one, two = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("one", "two"))
    assert sorted(one) == sorted(two) and all(torch.equal(one[k], two[k]) for k in one)
    records = [json.loads((tmp_path / d / "unlearning_result.json").read_text()) for d in ("one", "two")]
    for key in ("scan_before", "scan_after", "stopping"):
        assert records[0][key] == records[1][key], key
    assert records[0]["stopping"]["stopped_at"] is not None  # the check found the forget windows clean


@pytest.mark.slow
def test_unlearn_under_deepspeed_zero3_equals_one_process(workspace, tmp_path):
    """`accelerate launch` with the ZeRO-3 config (2 CPU processes, every parameter and the scores partitioned)
    runs `hf-memmit unlearn`: the same mask, checks and verdicts as one process; saved and printed once."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed: pip install deepspeed==0.19.8 "
                                             "(after torch, so pip keeps the CPU build)")
    from _launch import ROOT
    from safetensors.torch import load_file

    root, files = workspace
    args = ["unlearn", "--model", root / "model", "--forget", files["records"], "--k", K, "--l", L,
            "--set", "ratio=0.3"]
    with one_thread():
        assert run(*args, "--out", tmp_path / "one").exit_code == 0
    done = accelerate_launch(["-m", "hf_memmit.cli", *args, "--out", tmp_path / "zero3"],
                             config=ROOT / "recipes/accelerate/deepspeed_zero3_unlearn.yaml")
    assert done.stdout.count("adapter saved to") == 1
    one, two = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("one", "zero3"))
    assert sorted(one) == sorted(two) and all(torch.equal(one[k], two[k]) for k in one)
    records = [json.loads((tmp_path / d / "unlearning_result.json").read_text()) for d in ("one", "zero3")]
    for key in ("scan_before", "scan_after", "stopping", "newly_extractable"):
        assert records[0][key] == records[1][key], key
    assert records[0]["stopping"]["stopped_at"] is not None


def test_extractable_changes_names_the_windows():
    from datasets import Dataset

    from hf_memmit.metrics.scan import ScanResult
    from hf_memmit.own_model.unlearn import extractable_changes

    def scan(flags):
        return ScanResult(Dataset.from_dict({"record_id": ["a", "a", "b"], "offset": [0, 8, 0],
                                             "extractable": flags}), k=4, l=4)

    assert extractable_changes(scan([True, False, False]), scan([False, True, False])) == {
        "still_extractable": [], "newly_extractable": ["a@8"]}
    assert extractable_changes(scan([True, True, False]), scan([True, False, True])) == {
        "still_extractable": ["a@0"], "newly_extractable": ["b@0"]}


def test_scan_unlearn_merge(workspace, tmp_path):
    root, files = workspace
    with one_thread():
        res = run("scan", "--model", root / "model", "--data", files["records"], "--k", K, "--l", L,
                  "--out", tmp_path / "scan")
        assert res.exit_code == 0, res.output
        summary = json.loads((tmp_path / "scan" / "summary.json").read_text())
        assert (summary["records"], summary["records_extractable"]) == (8, 4)
        extractable = {r["record_id"] for r in map(json.loads, (tmp_path / "scan" / "records.jsonl").open())
                       if r["extractable"]}
        assert extractable == {f"secret{i}" for i in range(4)}
        assert "secret" in res.output and "4/8 records extractable" in res.output

        # no hyperparameters: the own-model defaults (step-scheduled BalancedSubnet with the stopping check)
        res = run("unlearn", "--model", root / "model", "--forget", tmp_path / "scan", "--eval-data", files["eval"],
                  "--eval-block", 8, "--set", "ratio=0.3", "--out", tmp_path / "adapter")
        assert res.exit_code == 0, res.output
        record = json.loads((tmp_path / "adapter" / "unlearning_result.json").read_text())
        assert record["scan_before"]["records_extractable"] == 4
        assert record["stopping"]["stopped_at"] is not None, record["stopping"]
        # every forget window is clean; a window outside the forget set may have become extractable (which ones
        # varies with the CPU's float rounding), and then it is named in the record and on the console
        assert record["still_extractable"] == []
        newly = record["newly_extractable"]
        assert record["scan_after"]["windows_extractable"] == len(newly)
        assert record["scan_after"]["records_extractable"] == len({w.split("@")[0] for w in newly}) < 4
        assert ("became extractable" in res.output) == bool(newly), res.output
        assert record["perplexity_before"] > 0 and record["perplexity_after"] > 0
        assert record["config"]["epochs"] is None and record["config"]["forget_check_every"] == 1
        assert record["config"]["forget_check_rows"] == 64

        res = run("merge", tmp_path / "adapter", "--out", tmp_path / "merged")
        assert res.exit_code == 0, res.output

    from peft import PeftModel

    import hf_memmit  # noqa: F401  (registers the mask tuners for PeftModel.from_pretrained)

    x = torch.tensor([word_tokenizer()(json.loads(line)["text"])["input_ids"]
                      for line in open(files["records"])])
    masked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "model"), tmp_path / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    assert type(merged).__name__ == "LlamaForCausalLM"
    with torch.no_grad():
        assert torch.allclose(merged(x).logits, masked(x).logits, atol=1e-5)
    assert (tmp_path / "merged" / "tokenizer.json").exists()


def test_nothing_to_unlearn_exits_zero(workspace, tmp_path):
    root, files = workspace
    with one_thread():
        res = run("unlearn", "--model", root / "model", "--forget", files["unseen"], "--k", K, "--l", L,
                  "--out", tmp_path / "adapter")
    assert res.exit_code == 0 and "nothing to unlearn" in res.output, res.output
    assert not (tmp_path / "adapter").exists()


def test_retain_file_whose_ids_collide_with_the_forget_file(workspace, tmp_path):
    """Two files without ids both get row numbers as record ids ("0@0", ...): only shared text is overlap."""
    root, _ = workspace
    texts = lambda seed: [{"text": r["text"]} for r in random_records(4, seed, "")]  # noqa: E731
    forget = write_jsonl(tmp_path / "forget.jsonl", texts(0))  # the memorized `secret` texts, no ids
    retain = write_jsonl(tmp_path / "retain.jsonl", texts(1))  # the `public` texts, no ids
    with one_thread():
        res = run("unlearn", "--model", root / "model", "--forget", forget, "--retain", retain, "--k", K, "--l", L,
                  "--set", "ratio=0.3", "--out", tmp_path / "adapter")
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "adapter" / "unlearning_result.json").read_text())
    assert record["scan_before"]["records_extractable"] == 4 and record["scan_after"]["records_extractable"] == 0
    one_line_error(run("unlearn", "--model", root / "model", "--forget", forget, "--retain", forget, "--k", K,
                       "--l", L, "--set", "ratio=0.3", "--out", tmp_path / "a"), "overlap", "retain id '0@0'")


def test_bad_input_is_one_line(workspace, tmp_path):
    root, files = workspace
    model = root / "model"
    (tmp_path / "records.xml").write_text("<x/>")
    one_line_error(run("scan", "--model", model, "--data", tmp_path / "records.xml", "--out", tmp_path / "o"),
                   ".xml")
    missing_column = write_jsonl(tmp_path / "body.jsonl", [{"body": "w1 w2"}])
    one_line_error(run("scan", "--model", model, "--data", missing_column, "--out", tmp_path / "o"), "body")
    (tmp_path / "empty.jsonl").write_text("")
    one_line_error(run("scan", "--model", model, "--data", tmp_path / "empty.jsonl", "--out", tmp_path / "o"))
    one_line_error(run("scan", "--model", model, "--data", files["records"], "--k", 30, "--l", 30,
                       "--out", tmp_path / "o"), "60")
    one_line_error(run("scan", "--model", model, "--data", files["records"], "--k", 0, "--out", tmp_path / "o"),
                   "k=0")
    (tmp_path / "not_a_model").mkdir()
    one_line_error(run("scan", "--model", tmp_path / "not_a_model", "--data", files["records"],
                       "--out", tmp_path / "o"), "config.json")
    (tmp_path / "fake.gguf").write_bytes(b"not a gguf file")
    one_line_error(run("scan", "--model", tmp_path / "fake.gguf", "--data", files["records"],
                       "--out", tmp_path / "o"), "GGUF")
    big_ids = write_jsonl(tmp_path / "ids.jsonl", [{"input_ids": list(range(VOCAB - 4, VOCAB + 4))}])
    one_line_error(run("scan", "--model", model, "--data", big_ids, "--k", K, "--l", L, "--out", tmp_path / "o"),
                   "vocabulary")
    one_line_error(run("unlearn", "--model", model, "--forget", files["records"], "--retain", files["records"],
                       "--k", K, "--l", L, "--set", "ratio=0.3", "--out", tmp_path / "a"), "overlap")


def test_merge_refuses_another_base_model(workspace, tmp_path):
    root, files = workspace
    with one_thread():
        assert run("scan", "--model", root / "model", "--data", files["records"], "--k", K, "--l", L,
                   "--out", tmp_path / "scan").exit_code == 0
        res = run("unlearn", "--model", root / "model", "--forget", tmp_path / "scan", "--method", "zero",
                  "--set", "ratio=0.25", "--out", tmp_path / "adapter")
        assert res.exit_code == 0, res.output
    tiny_llama(seed=1).save_pretrained(tmp_path / "other")  # same architecture, other weights (e.g. the base
    word_tokenizer().save_pretrained(tmp_path / "other")     # model an adapter of its fine-tuned copy was fit on)
    one_line_error(run("merge", tmp_path / "adapter", "--base", tmp_path / "other", "--out", tmp_path / "m"),
                   "different base model", "weights differ")
    wider = tiny_llama(seed=1)
    wider.config.intermediate_size = 96  # another architecture: its MLP has another width
    AutoModelForCausalLM.from_config(wider.config).save_pretrained(tmp_path / "wider")
    word_tokenizer().save_pretrained(tmp_path / "wider")
    one_line_error(run("merge", tmp_path / "adapter", "--base", tmp_path / "wider", "--out", tmp_path / "m"),
                   "different base model", "architecture differ")
    assert not (tmp_path / "m").exists()


def test_scan_with_a_device_map_offloading_to_disk(workspace, tmp_path):
    """`device_map="auto"` with a CPU memory limit too small for the model: Accelerate keeps layers on disk and
    loads each when it runs; the verdicts equal the plain load's, from the API and from `--device-map`."""
    from hf_memmit.models import load_causal_lm
    from hf_memmit.own_model import scan_model

    root, files = workspace
    with one_thread():
        model, tok = load_causal_lm(root / "model", device_map="auto", max_memory={"cpu": "20KB"},
                                    offload_folder=tmp_path / "off")
        assert "disk" in set(model.hf_device_map.values())
        mapped = scan_model(model, files["records"], tokenizer=tok, k=K, l=L, progress=False)
        plain = scan_model(root / "model", files["records"], k=K, l=L, progress=False)
        assert mapped.windows["extractable"] == plain.windows["extractable"]
        assert mapped.windows["token_match"] == plain.windows["token_match"]
        args = ["scan", "--model", root / "model", "--data", files["records"], "--k", K, "--l", L]
        assert run(*args, "--out", tmp_path / "plain").exit_code == 0
        res = run(*args, "--device-map", "auto", "--max-memory", "cpu=20KB", "--offload-folder", tmp_path / "off2",
                  "--out", tmp_path / "mapped")
    assert res.exit_code == 0, res.output
    for name in ("records.jsonl", "windows.jsonl"):
        assert (tmp_path / "mapped" / name).read_text() == (tmp_path / "plain" / name).read_text()


@pytest.mark.parametrize("fp32", [True, "head", False])
def test_every_check_precision_on_offloaded_bf16_weights(workspace, tmp_path, fp32):
    """bf16 weights that a device_map keeps on disk: each precision of the check gives the verdicts it gives on
    the same weights held in memory, twice in a row, and the model keeps its dtype and its device hooks."""
    from hf_memmit.models import load_causal_lm
    from hf_memmit.own_model import scan_model

    root, files = workspace
    with one_thread():
        held, tok = load_causal_lm(root / "model", dtype="bfloat16")
        offloaded, _ = load_causal_lm(root / "model", dtype="bfloat16", device_map="auto",
                                      max_memory={"cpu": "20KB"}, offload_folder=tmp_path)
        want = scan_model(held, files["records"], tokenizer=tok, k=K, l=L, progress=False, fp32=fp32)
        for _ in range(2):
            got = scan_model(offloaded, files["records"], tokenizer=tok, k=K, l=L, progress=False, fp32=fp32)
            assert got.windows["token_match"] == want.windows["token_match"]
    assert {p.dtype for p in offloaded.parameters()} == {torch.bfloat16}
    assert "forward" in offloaded.get_output_embeddings().__dict__  # Accelerate's hook is still installed


@pytest.mark.parametrize("extra, needles", [
    (["--max-memory", "gpu0=1GB", "--device-map", "auto"], ["--max-memory 'gpu0=1GB'", "GPU index"]),
    (["--max-memory", "cpu=1GB"], ["max_memory and offload_folder", "set device_map"]),
    (["--device-map", "auto", "--device", "cpu"], ["device='cpu' with device_map='auto'"]),
])
def test_device_map_bad_input_is_one_line(workspace, tmp_path, extra, needles):
    root, files = workspace
    res = run("scan", "--model", root / "model", "--data", files["records"], "--out", tmp_path / "x", *extra)
    one_line_error(res, *needles)
