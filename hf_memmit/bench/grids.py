"""Hyperparameter grids of the unlearning sweeps (Sakarvadia et al. 2025, "Mitigating Memorization in Language
Models", Appendix A.3.1): which option values each method is run with on a setting.

A method's axes come from its config's fields, so a newly registered method gets the ratio grid (and the epochs /
ig_steps axes if its config has those fields) without an entry here:

- `paper`: ratio {1e-5, 1e-4, 1e-3, 1e-2, 0.05}, plus {0.1, 0.25, 0.3, 0.5, 0.75, 0.9} for Subnet and
  BalancedSubnet; epochs {1, 10, 30} for methods with an `epochs` field; ig_steps {1, 10, 20}. The paper's
  exceptions: no IG on 16-layer models, Greedy ratio <= 1e-2 on 16-layer and language models.
- `quick`: a subset that fits 2 CPU cores: neuron methods skip the ratios that drop no unit of a 512-wide MLP
  (1e-5 .. 1e-3), Zero (n_layer x d_ff forward passes per run) and IG (a backward pass per step per row) keep
  their cheapest point, Greedy (one weight per step) keeps ratios whose step count stays in the hundreds, and
  epochs are {1, 10} ({1, 3, 10} for Subnet and BalancedSubnet: 3 is the demo's schedule, and on CPU 10 epochs
  of BalancedSubnet over the whole retain split take longer than the Extra fine-tuning budget). On language (a 50k vocabulary: every step costs about 10x a math step) Subnet and
  BalancedSubnet keep ratios {0.01, 0.1} and epochs {1, 3}, and Greedy ratio 1e-5.

The loss-based LoRA methods (gradient ascent, GradDiff, NPO, SimNPO; not in the paper) mask nothing, so they have
no ratio: their axis is the AdamW learning rate, {1e-5, 1e-4, 1e-3} (`paper`) or {1e-4, 1e-3} (`quick`), with
the same epochs axis as the other methods.
"""

from __future__ import annotations

import dataclasses
import itertools

from ..unlearning import get_method

GRIDS = ("paper", "quick")
PAPER_RATIOS = (1e-5, 1e-4, 1e-3, 1e-2, 0.05)
SUBNET_EXTRA_RATIOS = (0.1, 0.25, 0.3, 0.5, 0.75, 0.9)
SUBNET_METHODS = ("subnet", "balanced_subnet")
LORA_LRS = {"paper": (1e-5, 1e-4, 1e-3), "quick": (1e-4, 1e-3)}


def _fields(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_method(method).config_class)}


def _paper_axes(method: str, task: str, n_layer: int) -> dict[str, tuple]:
    fields = _fields(method)
    ratios = PAPER_RATIOS + (SUBNET_EXTRA_RATIOS if method in SUBNET_METHODS else ())
    if method == "greedy" and (n_layer >= 16 or task == "language"):
        ratios = tuple(r for r in ratios if r <= 1e-2)
    axes = {"ratio": ratios}
    if "epochs" in fields:
        axes["epochs"] = (1, 10, 30)
    if "ig_steps" in fields:
        axes["ig_steps"] = (1, 10, 20)
    return axes


def _quick_axes(method: str, task: str, n_layer: int) -> dict[str, tuple]:
    fields = _fields(method)
    neuron = "prefix_len" in fields  # the neuron-level methods' shared config field
    language = task == "language"
    if method in SUBNET_METHODS:
        ratios = (0.01, 0.1) if language else (0.01, 0.05, 0.1, 0.3)
    elif method == "greedy":
        ratios = (1e-5,) if language else (1e-5, 1e-4)
    elif method == "zero":
        ratios = (0.01,)
    elif neuron:
        ratios = (0.01, 0.05)
    else:
        ratios = (1e-3, 1e-2, 0.05)
    axes = {"ratio": ratios}
    if "epochs" in fields:
        axes["epochs"] = (1, 3) if language else (1, 3, 10) if method in SUBNET_METHODS else (1, 10)
    if "ig_steps" in fields:
        axes["ig_steps"] = (1,)
    return axes


def method_grid(method: str, grid: str, task: str, n_layer: int) -> list[dict]:
    """Every option dict of `method` on a (task, n_layer) setting under `grid` ("paper" or "quick"); [] when the
    paper runs no such method there (IG on 16 layers)."""
    if grid not in GRIDS:
        raise ValueError(f"grid={grid!r}; allowed: {', '.join(GRIDS)}")
    if method == "ig" and n_layer >= 16:
        return []
    axes = (_paper_axes if grid == "paper" else _quick_axes)(method, task, n_layer)
    if "ratio" not in _fields(method):  # a loss-based method: its learning rate instead of a masked fraction
        axes = {"lr": LORA_LRS[grid], **{k: v for k, v in axes.items() if k != "ratio"}}
    return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
