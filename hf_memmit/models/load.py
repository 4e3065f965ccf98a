"""Load any Hugging Face causal LM -- a Hub id, a local folder or a `.gguf` file -- through one code path.

A `.gguf` file is converted once (`convert_gguf`) into a plain safetensors checkpoint folder, dequantized, and
cached; after that it is loaded with the same `AutoModelForCausalLM.from_pretrained(folder)` call as any Hub
id or local folder. `trust_remote_code` is never enabled: only architectures that ship with transformers load.

`model_fingerprint` identifies a base model (config + state-dict shapes), so an adapter made on one base model
can be refused on another.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..utils import atomic_write_json, check_choice, library_versions

DTYPES = ("auto", "float32", "bfloat16", "float16")
CONVERT_DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")
GGUF_MAGIC = b"GGUF"
CONVERSION_FILE = "hf_memmit_conversion.json"
CONVERSION_MARKER = ".hf_memmit_conversion_complete"  # written last: a folder holding it is a finished conversion
CACHE_ENV = "HF_MEMMIT_CACHE"
CAUSAL_LM_EXAMPLES = "llama, qwen2, gemma3, gpt_neox, gpt2"

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Config keys that describe how a model was loaded, not which model it is (left out of `model_fingerprint`).
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "_model_name_or_path", "name_or_path", "transformers_version", "dtype",
                         "torch_dtype", "architectures", "use_cache", "quantization_config", "_attn_implementation",
                         "_attn_implementation_internal", "_experts_implementation", "output_attentions",
                         "output_hidden_states", "return_dict")


# --------------------------------------------------------------------------------------------------------- GGUF

def cache_dir() -> Path:
    """Root of hf_memmit's own cache: `$HF_MEMMIT_CACHE` if set, else `~/.cache/hf_memmit`."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "hf_memmit"


def supported_gguf_architectures() -> list[str]:
    """GGUF `general.architecture` values the installed transformers can load (its legacy GGUF loader's
    mapping plus the architectures of its newer GGUF reader). Not every one is a causal LM (e.g. t5)."""
    archs: set[str] = set()
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        archs.update(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
    except ImportError:  # pragma: no cover - transformers moved it
        pass
    try:
        from transformers.integrations.gguf import GGUF_ARCHS, GGUF_CONFIG_ARCHS

        archs.update(GGUF_ARCHS)
        archs.update(GGUF_CONFIG_ARCHS)
    except ImportError:  # pragma: no cover - older transformers
        pass
    return sorted(archs)


def _check_gguf_file(path: Path) -> None:
    if not path.exists():
        raise ValueError(f"GGUF file {str(path)!r} does not exist")
    if not path.is_file():
        raise ValueError(f"GGUF path {str(path)!r} is not a file")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ValueError(f"{str(path)!r} is not a GGUF file: it does not start with the GGUF magic bytes "
                         f"{GGUF_MAGIC!r} (found {magic!r})")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _gguf_architecture(path: Path) -> str:
    """`general.architecture` from the file's metadata (no tensor data is read)."""
    try:
        from transformers.integrations.gguf import read_gguf_metadata

        metadata, _ = read_gguf_metadata(str(path))
        arch = metadata.get("general.architecture")
    except ImportError:  # pragma: no cover - older transformers: the `gguf` package's reader
        from gguf import GGUFReader

        field = GGUFReader(str(path)).fields.get("general.architecture")
        arch = None if field is None else bytes(field.parts[field.data[0]]).decode()
    except Exception as err:
        raise ValueError(f"{str(path)!r} is not a readable GGUF file: {err}") from err
    if arch is None:
        raise ValueError(f"GGUF file {str(path)!r} has no 'general.architecture' metadata key")
    return str(arch)


def _unsupported_gguf(path: Path, arch: str, why: str) -> ValueError:
    return ValueError(f"GGUF file {path.name!r} has architecture {arch!r}, which {why}; transformers' GGUF loader "
                      f"supports: {', '.join(supported_gguf_architectures())} (a causal LM among them is needed)")


def _check_gguf_causal_lm(path: Path):
    """The GGUF's transformers config; ValueError if transformers cannot load it or it is not a causal LM."""
    from transformers import AutoConfig

    arch = _gguf_architecture(path)
    try:
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except ImportError as err:
        raise ImportError(f"converting {path.name!r} needs the `gguf` package: pip install gguf ({err})") from err
    except (ValueError, KeyError) as err:
        raise _unsupported_gguf(path, arch, f"transformers cannot load ({err})") from err
    reason = _not_causal_lm_reason(config)
    if reason:
        raise _unsupported_gguf(path, arch, f"is not a causal LM ({reason})")
    return config, arch


def _default_gguf_dir(path: Path, sha: str, dtype: str) -> Path:
    return cache_dir() / "gguf" / f"{path.stem}-{sha[:12]}-{dtype}"


def _finished_conversion(out: Path, sha: str, dtype: str) -> bool:
    """True if `out` is a finished conversion of this file in this dtype; ValueError if it is another one."""
    if not (out / CONVERSION_MARKER).is_file():
        return False
    try:
        record = json.loads((out / CONVERSION_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("source_sha256") != sha or record.get("dtype") != dtype:
        raise ValueError(f"out_dir {str(out)!r} holds a conversion of {record.get('source_file')!r} "
                         f"(sha256 {str(record.get('source_sha256'))[:12]}..., dtype {record.get('dtype')}), "
                         f"not of this file in {dtype}; pass overwrite=True or another out_dir")
    return True


def _versions() -> dict[str, str]:
    out = library_versions()
    for name in ("gguf", "tokenizers", "safetensors"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, dtype: str = "float32",
                 overwrite: bool = False) -> Path:
    """Turn a GGUF causal LM into a plain, dequantized safetensors checkpoint folder, once; return the folder.

    The folder holds `config.json`, `model.safetensors`, `generation_config.json`, the tokenizer files (converted
    from the GGUF's own tokenizer by transformers) and `hf_memmit_conversion.json` (source file name, its sha256,
    dtype, architecture, library versions). It loads with plain `AutoModelForCausalLM.from_pretrained(folder)`.

    Default `out_dir`: `<cache>/gguf/<stem>-<first 12 hex of the file's sha256>-<dtype>`, where `<cache>` is
    `$HF_MEMMIT_CACHE` or `~/.cache/hf_memmit`. A finished folder (marked by a file written last) is reused
    without loading anything; `overwrite=True` rebuilds it. The folder is built in a temporary sibling and renamed
    into place, so an interrupted conversion never leaves a half-written checkpoint at `out_dir`.

    `dtype`: "float32" (default; exact dequantized weights), "bfloat16" or "float16". Dequantization needs the
    full model in that dtype in memory (about 4 bytes per parameter in float32, twice that briefly).

    Raises ValueError if the file is missing or not GGUF, if transformers' GGUF loader does not support its
    architecture, or if it is not a causal LM; ImportError if the `gguf` package is missing.
    """
    check_choice("dtype", dtype, CONVERT_DTYPES)
    path = Path(gguf_path).expanduser().resolve()
    _check_gguf_file(path)
    sha = _sha256(path)
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else _default_gguf_dir(path, sha, dtype)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a folder")
    if out.exists() and not overwrite:
        if _finished_conversion(out, sha, dtype):
            return out
        if any(out.iterdir()):
            raise ValueError(f"out_dir {str(out)!r} exists and is not a finished hf_memmit conversion; "
                             f"pass overwrite=True to replace it, or another out_dir")

    config, arch = _check_gguf_causal_lm(path)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    t0 = time.perf_counter()
    # dequantize=True: plain dense weights even where a GGUF matmul kernel is installed, so the model saves.
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, config=config, dtype=_TORCH_DTYPES[dtype],
        quantization_config=GgufConfig(dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None or hasattr(model.config, "quantization_config"):
        model = _rebuild_unquantized(model)  # a transformers that kept the GGUF quantizer attached
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    n_params = sum(p.numel() for p in model.parameters())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / CONVERSION_FILE, {
            "source_file": path.name, "source_sha256": sha, "source_bytes": path.stat().st_size,
            "gguf_architecture": arch, "model_type": model.config.model_type,
            "model_class": type(model).__name__, "n_parameters": n_params, "dtype": dtype,
            "tie_word_embeddings": bool(getattr(model.config, "tie_word_embeddings", False)),
            "seconds": round(time.perf_counter() - t0, 2), "versions": _versions(),
        })
        (tmp / CONVERSION_MARKER).write_text("ok\n")
        del model
        if out.exists():  # overwrite=True, or an empty folder: move the old one aside, then drop it
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "x")
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:
            # Another process finished the same conversion first: keep theirs.
            if _finished_conversion(out, sha, dtype):
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _rebuild_unquantized(model):
    """A plain copy of a GGUF-loaded model: same config without `quantization_config`, same state dict."""
    import copy

    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    clean.load_state_dict(model.state_dict(), strict=True)
    clean.generation_config = copy.deepcopy(model.generation_config)
    return clean


# ------------------------------------------------------------------------------------------------- any causal LM

def _not_causal_lm_reason(config) -> str | None:
    """Why `config` is not a decoder-only causal LM that `AutoModelForCausalLM` builds, or None if it is."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return f"model type {model_type!r} has no AutoModelForCausalLM class"
    if getattr(config, "is_encoder_decoder", False):
        return f"model type {model_type!r} is an encoder-decoder"
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return f"model type {model_type!r} is an encoder (masked LM) config without is_decoder=True"
    return None


def _causal_lm_error(model: Any, reason: str) -> ValueError:
    return ValueError(f"model={str(model)!r} is not a causal LM: {reason}; allowed: a causal LM "
                      f"(AutoModelForCausalLM), e.g. {CAUSAL_LM_EXAMPLES}")


def _looks_like_hub_id(name: str) -> bool:
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1 or name.endswith(".gguf"):
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _resolve_source(model: str | os.PathLike) -> tuple[str, str]:
    """("hub" | "folder" | "gguf", the id or absolute path), or ValueError for a path that cannot be a model."""
    if not isinstance(model, (str, os.PathLike)) or not str(model):
        raise ValueError(f"model={model!r} is not supported; allowed: a Hugging Face Hub id, a local model folder "
                         f"or a .gguf file")
    path = Path(model).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_file():
            if path.suffix.lower() == ".gguf":
                return "gguf", str(path)
            raise ValueError(f"model={str(model)!r} is a file but not a .gguf file; allowed: a Hugging Face Hub "
                             f"id, a local model folder or a .gguf file")
        if not (path / "config.json").is_file():
            hint = (" (it holds adapter_config.json: a PEFT adapter, not a model; load its base model)"
                    if (path / "adapter_config.json").is_file() else "")
            raise ValueError(f"model={str(model)!r} is a folder but not a model folder: no config.json{hint}; "
                             f"allowed: a Hugging Face Hub id, a local model folder or a .gguf file")
        return "folder", str(path)
    if isinstance(model, str) and _looks_like_hub_id(model):
        return "hub", model
    raise ValueError(f"model={str(model)!r} does not exist as a local path and is not a Hugging Face Hub id; "
                     f"allowed: a Hub id ('org/name'), a local model folder or a .gguf file")


def _resolve_device(device: str) -> str:
    check_choice("device", device, DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but CUDA is not available; allowed here: 'auto', 'cpu'")
    return device


def load_causal_lm(model: str | os.PathLike, *, dtype: str = "auto", device: str = "auto",
                   tokenizer: bool = True):
    """Load a causal LM and its tokenizer: `(model, tokenizer)` (`tokenizer` is None with `tokenizer=False`).

    `model`: a Hugging Face Hub id (`from_pretrained(repo_id)`, using the local HF cache when offline), a local
    model folder (with `config.json`), or a `.gguf` file (converted once by `convert_gguf` to a cached float32
    safetensors folder, then loaded from that folder: the same `from_pretrained` path as the other two).
    Architectures are those transformers ships; `trust_remote_code` is never enabled.

    `dtype`: "auto" -- on CUDA the checkpoint's own dtype (e.g. bfloat16), on CPU float32 (bfloat16/float16
    matmuls are slow on CPU) -- or "float32", "bfloat16", "float16".
    `device`: "auto" (cuda if available, else cpu), "cpu" or "cuda".

    The model is returned in eval mode. If the tokenizer has no pad token, or one the model cannot embed (an id
    past the embedding matrix, e.g. a pad token a tokenizer class added by default), `tokenizer.pad_token` is set
    to its eos token (and the model's `generation_config.pad_token_id` to match if unset); left alone if the
    tokenizer has no eos token either. The tokenizer class is whatever `AutoTokenizer` picks for the checkpoint.

    Raises ValueError (naming the value and what is allowed) for: a local path that does not exist, a folder
    without `config.json`, a file that is not `.gguf` or not GGUF, a config that is not a causal LM (e.g. BERT,
    T5), a bad `dtype` or `device`, or `device="cuda"` without CUDA.
    """
    check_choice("dtype", dtype, DTYPES)
    dev = _resolve_device(device)
    kind, source = _resolve_source(model)
    if kind == "gguf":
        source = str(convert_gguf(source))

    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except ValueError as err:
        raise ValueError(f"model={str(model)!r}: transformers cannot read its config ({err}); allowed: a causal "
                         f"LM (AutoModelForCausalLM) of an architecture transformers ships, "
                         f"e.g. {CAUSAL_LM_EXAMPLES}") from err
    reason = _not_causal_lm_reason(config)
    if reason:
        raise _causal_lm_error(model, reason)

    torch_dtype: Any = _TORCH_DTYPES[dtype] if dtype != "auto" else ("auto" if dev == "cuda" else torch.float32)
    try:
        lm = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype, device_map=dev,
                                                  trust_remote_code=False)
    except ValueError as err:
        if "Unrecognized configuration class" in str(err):
            raise _causal_lm_error(model, f"model type {config.model_type!r}") from err
        raise
    lm.eval()

    tok = None
    if tokenizer:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
        n_embeddings = lm.get_input_embeddings().num_embeddings
        pad_unusable = tok.pad_token_id is not None and tok.pad_token_id >= n_embeddings
        if (tok.pad_token is None or pad_unusable) and tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        gen = getattr(lm, "generation_config", None)
        if gen is not None and gen.pad_token_id is None and tok.pad_token_id is not None:
            gen.pad_token_id = tok.pad_token_id
    return lm, tok


# ---------------------------------------------------------------------------------------------------- identity

def model_fingerprint(model) -> dict[str, Any]:
    """Identify a base model: `{"model_type", "model_class", "name_or_path", "n_parameters", "dtype", "sha256"}`.

    `sha256` covers the model class, the config (`to_json_string()` minus keys that describe how it was loaded,
    not what it is: name/path, dtype, transformers version, architectures, use_cache, attention implementation,
    quantization) and every state-dict entry's name and shape. It is the same for a model loaded from a Hub id,
    a folder or a converted GGUF, in any dtype or on any device; two fingerprints with different `sha256` are
    different base models. A GGUF conversion has its own fingerprint, not that of the HF checkpoint it was made
    from (its config is rebuilt from GGUF metadata, and its weights went through quantization anyway).
    Compute it on the plain base model (not on a PEFT-wrapped one).
    """
    config = model.config
    cfg = json.loads(config.to_json_string())
    for key in _VOLATILE_CONFIG_KEYS:
        cfg.pop(key, None)
    shapes = [[name, list(t.shape)] for name, t in sorted(model.state_dict().items())]
    payload = json.dumps({"class": type(model).__name__, "config": cfg, "shapes": shapes}, sort_keys=True,
                         default=str)
    return {
        "model_type": getattr(config, "model_type", None),
        "model_class": type(model).__name__,
        "name_or_path": getattr(config, "name_or_path", None) or getattr(config, "_name_or_path", None),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(getattr(model, "dtype", "")).replace("torch.", ""),
        "sha256": hashlib.sha256(payload.encode()).hexdigest(),
    }
