"""MemSinks configuration (Ghosal et al. 2025, "Memorization Sinks")."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ....utils import check_range
from ..config import TiedDropoutConfig


@dataclass
class MemSinksConfig:
    """Args:
        g: fraction of each MLP's hidden units that are general (always on), in (0, 1]. Default 0.7 (the paper's
            70/30 split).
        p: sink density, the share of the sink pool each sequence owns, in (0, 1]. Default 0.3.
        layout: which units are general: `first` (the first `int(g * units)`, upstream) or `hashed`.
        hash: sequence id -> sinks hash (`splitmix64`; upstream's overflowing power hash is not reproduced).
        salt: mixed into the hash.
        per_layer: draw a sequence's sinks per layer; False (upstream) uses the same indices in every layer.
        eval_mode: the mode of the model in eval mode outside a `mode(...)` block: `drop` (sinks dropped, the
            deployment model), `all` (sinks on as their mean) or `seq` (each sequence's own sinks).
        rescale: general-unit scale when the sinks are dropped: `none` (default; the general units' training
            condition), `code` ((g+p)/g, the released code), `mass` ((g+(1-g)p)/g).
        target_modules: regex of the MLP down projections; None: GPT-2 `mlp.c_proj`, Llama-family `mlp.down_proj`.
    """

    g: float = 0.7
    p: float = 0.3
    layout: str = "first"
    hash: str = "splitmix64"
    salt: int = 0
    per_layer: bool = False
    eval_mode: str = "drop"
    rescale: str = "none"
    target_modules: str | None = None

    def __post_init__(self):
        check_range("g", self.g, 0.0, 1.0, low_open=True)
        check_range("p", self.p, 0.0, 1.0, low_open=True)
        self.to_tied()  # the core config validates the shared fields (one place)

    def to_tied(self) -> TiedDropoutConfig:
        return TiedDropoutConfig(p_gen=self.g, p_mem=self.p, eval_mode=self.eval_mode, rescale=self.rescale,
                                 layout=self.layout, per_layer=self.per_layer, salt=self.salt, hash=self.hash,
                                 target_modules=self.target_modules)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MemSinksConfig:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
