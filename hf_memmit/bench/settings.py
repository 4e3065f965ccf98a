"""The TinyMem settings a bench runs on (Sakarvadia et al. 2025, "Mitigating Memorization in Language Models",
Section 2): task x artifact x layers x seed, and the suites that name a set of them."""

from __future__ import annotations

from dataclasses import dataclass

from ..data import TinyMemDataConfig
from ..utils import check_choice

SUITES = ("quick", "paper")  # the data profile and the grid of each suite share its name
KINDS = ("math_noise", "math_backdoor", "language_noise", "language_backdoor")


@dataclass(frozen=True)
class Setting:
    task: str
    artifact: str
    n_layer: int = 4
    seed: int = 0
    profile: str = "quick"

    @property
    def kind(self) -> str:
        return f"{self.task}_{self.artifact}"

    @property
    def name(self) -> str:
        return f"{self.kind}_l{self.n_layer}_s{self.seed}"

    @property
    def group(self) -> str:
        """The setting without its seed: what the report averages over seeds."""
        return f"{self.kind}_l{self.n_layer}"

    def data_config(self) -> TinyMemDataConfig:
        return TinyMemDataConfig(task=self.task, artifact=self.artifact, profile=self.profile, seed=self.seed)

    def to_dict(self) -> dict:
        return {"task": self.task, "artifact": self.artifact, "n_layer": self.n_layer, "seed": self.seed,
                "profile": self.profile}


def suite_settings(suite: str, kinds=KINDS, seeds=(0,), layers=(4,)) -> list[Setting]:
    """Every (kind, layers, seed) of a suite, in a stable order."""
    check_choice("suite", suite, SUITES)
    for kind in kinds:
        check_choice("setting", kind, KINDS)
    return [Setting(*kind.split("_"), n_layer=n, seed=s, profile=suite) for kind in kinds for n in layers
            for s in seeds]
