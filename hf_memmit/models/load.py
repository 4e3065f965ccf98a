"""Load any Hugging Face causal LM -- a Hub id, a local folder or a `.gguf` file -- through one code path.

A `.gguf` file is converted once (`convert_gguf`) into a plain safetensors checkpoint folder, dequantized, and
cached; after that it is loaded with the same `AutoModelForCausalLM.from_pretrained(folder)` call as any Hub
id or local folder. `trust_remote_code` is never enabled: only architectures that ship with transformers load.

"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..utils import check_choice

from .gguf import TORCH_DTYPES, convert_gguf
from .identity import CAUSAL_LM_EXAMPLES, not_causal_lm_reason

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda")

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


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")  # Accelerate's big-model placements


def load_causal_lm(model: str | os.PathLike, *, dtype: str = "auto", device: str = "auto",
                   tokenizer: bool = True, device_map: str | None = None, max_memory: dict | None = None,
                   offload_folder: str | os.PathLike | None = None):
    """Load a causal LM and its tokenizer: `(model, tokenizer)` (`tokenizer` is None with `tokenizer=False`).

    `model`: a Hugging Face Hub id (`from_pretrained(repo_id)`, using the local HF cache when offline), a local
    model folder (with `config.json`), or a `.gguf` file (converted once by `convert_gguf` to a cached float32
    safetensors folder, then loaded from that folder: the same `from_pretrained` path as the other two).
    Architectures are those transformers ships; `trust_remote_code` is never enabled.

    `dtype`: "auto" -- on CUDA the checkpoint's own dtype (e.g. bfloat16), on CPU float32 (bfloat16/float16
    matmuls are slow on CPU) -- or "float32", "bfloat16", "float16".
    `device`: "auto" (cuda if available, else cpu), "cpu" or "cuda".
    `device_map`: for a model larger than one device, Accelerate's big-model placement ("auto", "balanced",
    "balanced_low_0", "sequential"): its layers are spread over the GPUs, then CPU memory, then `offload_folder`
    on disk, within `max_memory` per device (e.g. {0: "40GiB", "cpu": "100GiB"}); `device` must then stay
    "auto". The model's inputs go to its first device (`hf_memmit.utils.device_of`).

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
    if device_map is not None:
        check_choice("device_map", device_map, DEVICE_MAPS)
        if device != "auto":
            raise ValueError(f"device={device!r} with device_map={device_map!r}; allowed: one of them (device_map "
                             "places the model's layers itself)")
    elif max_memory is not None or offload_folder is not None:
        raise ValueError("max_memory and offload_folder place a model with device_map; allowed: set device_map "
                         f"({', '.join(DEVICE_MAPS)}) too")
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
    reason = not_causal_lm_reason(config)
    if reason:
        raise _causal_lm_error(model, reason)

    torch_dtype: Any = TORCH_DTYPES[dtype] if dtype != "auto" else ("auto" if dev == "cuda" else torch.float32)
    try:
        placement = {"device_map": dev} if device_map is None else {
            "device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}
        lm = AutoModelForCausalLM.from_pretrained(source, config=config, dtype=torch_dtype, trust_remote_code=False,
                                                  **placement)
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
