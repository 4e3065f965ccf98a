"""Known version mismatches in the user's stack, reported once at import instead of as a puzzling error later.

transformers' own adapter methods on a plain model (`add_adapter`, `set_adapter`, `disable_adapters`,
`enable_adapters`, `active_adapters`, `get_adapter_state_dict`, `delete_adapter`) refuse to run when the installed
peft is older than transformers' `MIN_PEFT_VERSION` (transformers 5.24 asks for peft >= 0.22, which was not
released when 5.24 was). Checked with transformers 5.24.0 + peft 0.21.2: `model.load_adapter(path)` still loads and
activates a mask adapter (same logits), but the model cannot then disable or switch it. hf_memmit itself only uses
peft's API (`get_peft_model`, `PeftModel.from_pretrained`, `save_pretrained`, `disable_adapter()`,
`merge_and_unload()`), which that check does not guard, so `unlearn`, saving, loading and merging keep working.
"""

from __future__ import annotations

import importlib.metadata as md
import logging
import warnings
from contextlib import contextmanager

from packaging.version import Version

TRANSFORMERS_ADAPTER_METHODS = ("add_adapter", "set_adapter", "disable_adapters",
                                "enable_adapters", "active_adapters", "get_adapter_state_dict", "delete_adapter")


def peft_version_gap() -> tuple[str, str, str] | None:
    """(transformers version, installed peft version, peft version transformers asks for) when the installed peft
    is older than what the installed transformers' adapter methods require; None when they agree."""
    from transformers.integrations import peft as tf_peft

    required = getattr(tf_peft, "MIN_PEFT_VERSION", None)
    if required is None:
        return None
    installed = md.version("peft")
    if Version(installed) >= Version(required):
        return None
    return md.version("transformers"), installed, required


def warn_on_peft_version_gap() -> None:
    """Warn (once per process: `import hf_memmit` calls it once) naming both versions and what is affected."""
    gap = peft_version_gap()
    if gap is None:
        return
    tf_version, installed, required = gap
    methods = ", ".join(f"model.{m}()" for m in TRANSFORMERS_ADAPTER_METHODS)
    warnings.warn(
        f"transformers {tf_version} requires peft >= {required} for its own adapter methods ({methods}), but peft "
        f"{installed} is installed: those methods will raise ValueError. hf_memmit's unlearn(), "
        "PeftModel.save_pretrained / PeftModel.from_pretrained, disable_adapter() and merge_and_unload() are not "
        "affected. For the tested versions install with the project's constraints.txt "
        "(pip install -c constraints.txt ...).",
        UserWarning, stacklevel=3)


@contextmanager
def quiet_peft_wrapping():
    """peft 0.21 reads `model.is_gradient_checkpointing` whenever it wraps a model (`get_peft_model`,
    `PeftModel.from_pretrained`); transformers 5 deprecated that property for `is_activation_checkpointing` and
    warns each time. And LoRA on GPT-2's `Conv1D` layers warns that peft sets `fan_in_fan_out` itself, which it
    does per layer. Nothing a user can act on, so both are silenced around our own wrapping calls only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False but the target module is `Conv1D`")
        yield


class _DropNotice(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def drop_transformers_notice(text: str, logger: str = "transformers.modeling_utils") -> logging.Filter:
    """From now on, drop the log records of transformers' `logger` that contain `text` (once per text)."""
    log = logging.getLogger(logger)
    for f in log.filters:
        if isinstance(f, _DropNotice) and f.text == text:
            return f
    f = _DropNotice(text)
    log.addFilter(f)
    return f


PADDING_NOTICE = "We strongly recommend passing in an `attention_mask` since your input_ids may be padded"


@contextmanager
def quiet_padding_notice():
    """transformers says input_ids "may be padded" when a forward without an attention mask sees the pad id at a
    row's edge. It fires inside `generate` even when `generate` is given the mask (seen with TinyMem math, whose
    pad id is also a token the model generates), so around our own `generate` calls it says nothing a caller can
    act on."""
    log = logging.getLogger("transformers.modeling_utils")
    f = _DropNotice(PADDING_NOTICE)
    log.addFilter(f)
    try:
        yield
    finally:
        log.removeFilter(f)

