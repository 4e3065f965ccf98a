"""The tied-dropout config: which units are general, each key's share of the pool, the eval mode."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ...utils import check_choice, check_range

MODES = ("all", "drop", "seq")
RESCALES = ("none", "code", "mass")
LAYOUTS = ("first", "hashed")
HASHES = ("splitmix64",)
CONFIG_ATTR = "tied_dropout"  # model.config attribute holding the config, so checkpoints remember it


@dataclass
class TiedDropoutConfig:
    """Which units a key gets, and how evaluation treats them.

    Args:
        p_gen: fraction of each MLP's hidden units that are general (always on), in (0, 1]; the first
            `int(p_gen * units)` of them with `layout="first"` (upstream), a salted hash choice with `"hashed"`.
        p_mem: share of the pool a key owns (an independent draw per key and unit), in (0, 1].
        eval_mode: the mode of a model in eval mode outside a `mode(...)` block: `all`, `drop` or `seq`.
        rescale: general-unit scale in `drop` mode: `none`, `code` or `mass` (module doc).
        per_layer: draw a key's units per layer; False (upstream) uses the same unit indices in every layer.
        salt: mixed into the hash; a different salt gives unrelated masks.
        hash: the key -> units hash (`splitmix64`: a counter-based 64-bit mix of (key, unit, salt, layer)).
        target_modules: regex (full match) of the down projections to hook; None: every block's MLP down
            projection, found by module structure (`hf_memmit.models.mlp.find_mlps`: GPT-2, Llama family,
            Qwen, Gemma, GPT-NeoX/Pythia, Falcon, Phi, ...).
    """

    p_gen: float = 0.7
    p_mem: float = 0.3
    eval_mode: str = "drop"
    rescale: str = "none"
    layout: str = "first"
    per_layer: bool = False
    salt: int = 0
    hash: str = "splitmix64"
    target_modules: str | None = None

    def __post_init__(self):
        check_range("p_gen", self.p_gen, 0.0, 1.0, low_open=True)
        check_range("p_mem", self.p_mem, 0.0, 1.0, low_open=True)
        check_choice("eval_mode", self.eval_mode, MODES)
        check_choice("rescale", self.rescale, RESCALES)
        check_choice("layout", self.layout, LAYOUTS)
        check_choice("hash", self.hash, HASHES)
        if not isinstance(self.salt, int) or self.salt < 0:
            raise ValueError(f"salt={self.salt!r} must be a non-negative integer")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TiedDropoutConfig:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
