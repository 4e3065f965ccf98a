"""GGUF -> a plain safetensors checkpoint folder, once: dequantized, cached, written atomically.

After conversion a `.gguf` model loads with the same `AutoModelForCausalLM.from_pretrained(folder)` call as a Hub
id or a local folder (`load_causal_lm`).
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

import torch

from ..utils import atomic_write_json, cache_dir, check_choice, library_versions
from .identity import not_causal_lm_reason

CONVERT_DTYPES = ("float32", "bfloat16", "float16")
GGUF_MAGIC = b"GGUF"
CONVERSION_FILE = "hf_memmit_conversion.json"
CONVERSION_MARKER = ".hf_memmit_conversion_complete"  # written last: a folder holding it is a finished conversion
TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
    reason = not_causal_lm_reason(config)
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
        str(path.parent), gguf_file=path.name, config=config, dtype=TORCH_DTYPES[dtype],
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
