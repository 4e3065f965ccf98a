"""Fields every neuron-level method shares (and their checks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...tuners import NeuronMaskConfig
from ...utils import check_bool, check_choice, check_int, check_range

SELECTIONS = ("per_layer", "global")


@dataclass
class NeuronMethodConfig(NeuronMaskConfig):
    """Fields of every neuron-level method.

    Args:
        ratio: fraction of MLP units dropped. With `selection="per_layer"` (default, MemPi and TinyMem) every
            masked block loses floor(ratio * d_ff) units, its highest-scoring ones; with `"global"` floor(ratio *
            d_ff * number of masked blocks) units go wherever the scores are highest. In (0, 1). A ratio that
            selects no unit (ratio * d_ff < 1 per layer) is refused before any scoring: TinyMem's grid values
            1e-5, 1e-4 and 1e-3 select nothing at d_ff 512 and were silent no-ops there.
        selection: "per_layer" or "global" (MemPi's unused `get_global_scores`, flagged as an extension).
        skip_first_layer: never drop units of block 0 (MemPi's DEL setting `start_mask_layer=1`; its Slim/HC
            then also leave block 0 untrained). Default False: TinyMem drops in every layer.
        prefix_len: the first `prefix_len` tokens of a row are context only: losses, activations and the IG
            target cover the predictions of tokens prefix_len .. T-1, made at positions prefix_len-1 .. T-2
            (MemPi's P). Default 1: every next-token prediction of the row. TinyMem used the whole row for
            Zero/Slim/HC and its prompt length for Act/IG; set e.g. 50 to score only a memorized suffix.
        batch_size: forget rows per forward pass.
        target_modules etc.: as `NeuronMaskConfig` (default: the model's MLP down projections).
    """

    ratio: float = field(default=0.01, metadata={"help": "Fraction of MLP units to drop, in (0, 1)."})
    selection: str = field(default="per_layer", metadata={"help": "'per_layer' top-k or 'global' top-k."})
    skip_first_layer: bool = field(default=False, metadata={"help": "Never drop units of block 0."})
    prefix_len: int = field(default=1, metadata={"help": "Leading context tokens whose prediction is not scored."})
    batch_size: int = field(default=64, metadata={"help": "Forget rows per forward pass."})

    def __post_init__(self):
        super().__post_init__()
        check_range("ratio", self.ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_choice("selection", self.selection, SELECTIONS)
        check_bool("skip_first_layer", self.skip_first_layer)
        check_int("prefix_len", self.prefix_len, 1)
        check_int("batch_size", self.batch_size, 1)
        if self.trainable_coefficients:
            raise ValueError(f"trainable_coefficients={self.trainable_coefficients!r} does not fit "
                             f"{type(self).__name__}; allowed: False (a fitted neuron mask keeps no coefficients)")


