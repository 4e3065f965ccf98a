"""Where a causal LM keeps its MLPs: one rule for the mask tuners, the neuron-level methods and tied dropout.

Every transformer block of a dense causal LM has an MLP submodule (`mlp`, `feed_forward` or `ffn`) made of
input projections (`up`, `gate`, GPT-2 `c_fc`, ...) and a down projection whose *input* is the MLP's hidden
units (Llama `down_proj`, GPT-2 `c_proj`, GPT-NeoX `dense_4h_to_h`, ...). `find_mlps` finds them by module
structure and names, whatever the `model_type` string: a Qwen3 or Gemma3 checkpoint works because its blocks
have `mlp.gate_proj`, `mlp.up_proj`, `mlp.down_proj`, not because its type is listed anywhere.

GPT-2's projections are transformers `Conv1D` layers whose weight is stored transposed, `[in, out]`
(`nn.Linear` stores `[out, in]`); `MLPBlock.transposed` and `is_transposed` say which, so callers slice the
right axis. Layers wrapped by a PEFT tuner (anything with `get_base_layer()`) are looked through.

Only torch and transformers are imported here (the models layer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn
from transformers.pytorch_utils import Conv1D


@dataclass(frozen=True)
class MLPLayout:
    """A known MLP naming: the child names of the input projections and of the down projection."""

    name: str
    inputs: tuple[str, ...]
    down: str
    examples: str


# Tried in this order on every MLP container; the first layout whose projections are all present wins (so a
# gated `gate_proj, up_proj -> down_proj` MLP is never mistaken for MPT's ungated `up_proj -> down_proj`).
LAYOUTS: tuple[MLPLayout, ...] = (
    MLPLayout("gated", ("gate_proj", "up_proj"), "down_proj",
              "Llama, Mistral, Qwen2, Qwen3, Gemma 1-3, OLMo, Granite, SmolLM, ..."),
    MLPLayout("gpt2", ("c_fc",), "c_proj", "GPT-2 (Conv1D), GPTBigCode, StarCoder2"),
    MLPLayout("gpt_neox", ("dense_h_to_4h",), "dense_4h_to_h", "GPT-NeoX, Pythia, Falcon, BLOOM"),
    MLPLayout("fc", ("fc1",), "fc2", "Phi-1, Phi-1.5, Phi-2"),
    MLPLayout("fc_in_out", ("fc_in",), "fc_out", "GPT-J, CodeGen"),
    MLPLayout("fused_gated", ("gate_up_proj",), "down_proj", "Phi-3"),
    MLPLayout("up_down", ("up_proj",), "down_proj", "MPT"),
)
# attribute names under which a block keeps its MLP
MLP_CONTAINERS: tuple[str, ...] = ("mlp", "feed_forward", "ffn")


@dataclass(frozen=True)
class MLPBlock:
    """The MLP of one transformer block.

    Attributes:
        layer: transformer block index (the first integer in the module path, e.g. 3 in `model.layers.3.mlp`).
        layout: name of the matched `MLPLayout`.
        mlp_name: full module name of the MLP container, e.g. `transformer.h.3.mlp`.
        input_names, down_name: full module names of the input projections and of the down projection.
        inputs, down: those modules (PEFT-wrapped ones as found in the model, i.e. the wrappers).
        hidden_size: the MLP's hidden units, the down projection's input width (d_ff).
        transposed: True when the down projection is a transformers `Conv1D` (weight `[in, out]`).
    """

    layer: int
    layout: str
    mlp_name: str
    input_names: tuple[str, ...]
    down_name: str
    inputs: tuple[nn.Module, ...]
    down: nn.Module
    hidden_size: int
    transposed: bool

    @property
    def names(self) -> tuple[str, ...]:
        """All projection names, inputs first, then the down projection."""
        return (*self.input_names, self.down_name)


def base_layer(module: nn.Module) -> nn.Module:
    """The layer a PEFT tuner layer wraps (the module itself when it wraps nothing)."""
    get = getattr(module, "get_base_layer", None)
    return get() if callable(get) else module


def is_projection(module: nn.Module) -> bool:
    """An `nn.Linear` or transformers `Conv1D` (possibly PEFT-wrapped)."""
    return isinstance(base_layer(module), (nn.Linear, Conv1D))


def is_transposed(module: nn.Module) -> bool:
    """True for a transformers `Conv1D` (weight `[in, out]`), False for `nn.Linear` (weight `[out, in]`)."""
    return isinstance(base_layer(module), Conv1D)


def in_features(module: nn.Module) -> int:
    """Input width of a projection: `weight.shape[0]` for Conv1D, `weight.shape[1]` for nn.Linear."""
    base = base_layer(module)
    if not isinstance(base, (nn.Linear, Conv1D)):
        raise TypeError(f"{type(base).__name__} is not an nn.Linear or transformers Conv1D projection")
    return base.weight.shape[0] if isinstance(base, Conv1D) else base.weight.shape[1]


def out_features(module: nn.Module) -> int:
    base = base_layer(module)
    if not isinstance(base, (nn.Linear, Conv1D)):
        raise TypeError(f"{type(base).__name__} is not an nn.Linear or transformers Conv1D projection")
    return base.weight.shape[1] if isinstance(base, Conv1D) else base.weight.shape[0]


def block_index(module_name: str) -> int | None:
    """Transformer block index in a module name: the first integer path component (`transformer.h.3.mlp` -> 3,
    `base_model.model.model.layers.0.mlp.down_proj` -> 0); None when there is none."""
    match = re.search(r"(?:^|\.)(\d+)(?:\.|$)", module_name)
    return None if match is None else int(match.group(1))


def supported_layouts() -> str:
    """The layouts `find_mlps` recognises, in words (for error messages)."""
    rows = "; ".join(f"{lay.name}: {', '.join(lay.inputs)} -> {lay.down} ({lay.examples})" for lay in LAYOUTS)
    return (f"blocks have an MLP submodule named {'/'.join(MLP_CONTAINERS)} holding nn.Linear/Conv1D projections "
            f"in one of these layouts (inputs -> down projection): {rows}")


def no_mlp_error(model: nn.Module) -> ValueError:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return ValueError(
        f"model type {model_type!r} has no supported MLP; allowed model types: any causal LM whose "
        f"{supported_layouts()}. {type(model).__name__} has no such block (recurrent and mixture-of-experts "
        "models have none). For another architecture pass target_modules= naming its MLP nn.Linear layers "
        "explicitly"
    )


def _match(container: nn.Module) -> tuple[MLPLayout, dict[str, nn.Module]] | None:
    children = dict(container.named_children())
    for layout in LAYOUTS:
        names = (*layout.inputs, layout.down)
        if all(n in children and is_projection(children[n]) for n in names):
            return layout, {n: children[n] for n in names}
    return None


def _decoder_prefix(model: nn.Module) -> str | None:
    """Module-name prefix of the model's decoder (its language model), when it says which one that is."""
    get = getattr(model, "get_decoder", None)
    try:
        decoder = get() if callable(get) else None
    except Exception:  # noqa: BLE001  (some models raise instead of returning None)
        decoder = None
    if not isinstance(decoder, nn.Module):
        return None
    for name, module in model.named_modules():
        if module is decoder:
            return name
    return None


def find_mlps(model: nn.Module) -> list[MLPBlock]:
    """The MLP of every transformer block of `model` (a causal LM, possibly inside a PeftModel), in block order.

    Raises ValueError when no block has an MLP of a known layout (`LAYOUTS`), or when its MLPs are ambiguous
    (several block lists, e.g. a vision tower and a language model, and no `get_decoder()` to choose)."""
    found: list[MLPBlock] = []
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in MLP_CONTAINERS:
            continue
        hit = _match(module)
        layer = block_index(name)
        if hit is None or layer is None:
            continue
        layout, projections = hit
        down = projections[layout.down]
        inputs = tuple(projections[n] for n in layout.inputs)
        hidden = in_features(down)
        widths = {out_features(m) for m in inputs}
        if not widths <= {hidden, 2 * hidden}:  # 2x: a fused gate+up projection
            raise ValueError(f"{name}: the input projections {layout.inputs} output {sorted(widths)} units but "
                             f"{layout.down} takes {hidden}; allowed: an MLP whose projections fit together")
        found.append(MLPBlock(layer=layer, layout=layout.name, mlp_name=name,
                              input_names=tuple(f"{name}.{n}" for n in layout.inputs),
                              down_name=f"{name}.{layout.down}", inputs=inputs, down=down, hidden_size=hidden,
                              transposed=is_transposed(down)))
    if not found:
        raise no_mlp_error(model)
    lists = {_block_list(b) for b in found}
    if len(lists) > 1:
        prefix = _decoder_prefix(model)
        if prefix is not None:
            mine = [b for b in found if not prefix or b.mlp_name.startswith(prefix + ".")]
            if mine:
                found, lists = mine, {_block_list(b) for b in mine}
        if len(lists) > 1:
            raise ValueError(f"{type(model).__name__} has MLPs in several block lists {sorted(lists)}; allowed: "
                             "one (pass target_modules= naming the MLP projections of the language model)")
    return sorted(found, key=lambda b: b.layer)


def _block_list(block: MLPBlock) -> str:
    """`model.layers` for `model.layers.3.mlp`: the path of the list the block sits in."""
    match = re.search(rf"(?:^|\.){block.layer}(?:\.|$)", block.mlp_name)
    return block.mlp_name[: match.start()]


def mlp_target_regex(model: nn.Module, part: str = "all") -> str:
    """A peft `target_modules` regex (matched with `re.fullmatch`) naming exactly the MLP projections of `model`:
    `part="all"` every projection, `"down"` the down projections only. Short when a short one is exact
    (GPT-2: `.*\\.mlp\\.(c_fc|c_proj)`; Llama family: `.*\\.mlp\\.(gate_proj|up_proj|down_proj)`; down only:
    `.*\\.mlp\\.c_proj`, `.*\\.mlp\\.down_proj`), else the alternation of the full module names."""
    if part not in ("all", "down"):
        raise ValueError(f"part={part!r} is not supported; allowed: 'all', 'down'")
    blocks = find_mlps(model)
    wanted = [n for b in blocks for n in (b.names if part == "all" else (b.down_name,))]
    containers = list(dict.fromkeys(b.mlp_name.rsplit(".", 1)[-1] for b in blocks))
    children = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in wanted))

    def group(items: list[str]) -> str:
        return items[0] if len(items) == 1 else "(" + "|".join(items) + ")"

    short = rf".*\.{group(containers)}\.{group(children)}"
    matched = {name for name, _ in model.named_modules() if re.fullmatch(short, name)}
    if matched == set(wanted):
        return short
    return "(" + "|".join(re.escape(n) for n in wanted) + ")"


__all__ = [
    "LAYOUTS",
    "MLP_CONTAINERS",
    "MLPBlock",
    "MLPLayout",
    "base_layer",
    "block_index",
    "find_mlps",
    "in_features",
    "is_projection",
    "is_transposed",
    "mlp_target_regex",
    "no_mlp_error",
    "out_features",
    "supported_layouts",
]
