"""Tied dropout: a fixed set of MLP hidden units per key (an example, a document), shared by example-tied
dropout (key = example id; Maini et al. 2023) and MemSinks (key = a hash of the document's tokens; Ghosal et
al. 2025, "Memorization Sinks").

Each MLP's hidden units split into *general* units (always on) and a *pool* (memorization units, "sinks").
A key owns a pseudo-random `p_mem` share of the pool, drawn from a counter-based hash of (key, unit, salt):
nothing is stored, no RNG is touched, and the same key gets the same units in every epoch, process and run.
The mask multiplies the input of every block's MLP down projection (GPT-2 `mlp.c_proj`, Llama-family
`mlp.down_proj`, GPT-NeoX `mlp.dense_4h_to_h`, ...: any layout `hf_memmit.models.mlp.find_mlps` knows) through
a forward pre-hook, so a masked unit contributes nothing and gets no gradient.

Modes (`TiedDropout.mode`): in training the key's own mask (general x 1, own pool units x 1, others x 0,
no rescaling, as both references); at evaluation `all` (pool units x p_mem, the mean field), `drop` (pool
units x 0; general units x 1 (`none`), x (g+p)/g (`code`, the references' formula) or x (g+(1-g)p)/g
(`mass`, the expected activation mass)), `seq` (the key's own training mask). `exclude` zeroes the pool
units of given keys in `all` and `seq`. `all` and `drop` need no keys, so they work with `generate()` and
the KV cache; `seq` with one key per row does too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import RemoveColumnsCollator

from ..models.mlp import find_mlps, in_features, is_transposed
from ..utils import check_choice, check_range

MODES = ("all", "drop", "seq")
RESCALES = ("none", "code", "mass")
LAYOUTS = ("first", "hashed")
HASHES = ("splitmix64",)
CONFIG_ATTR = "tied_dropout"  # model.config attribute holding the config, so checkpoints remember it

_MASK63 = (1 << 63) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MUL1, _MUL2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


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


# ---- keys and the hash ------------------------------------------------------------------------------------

def hash63(data: bytes) -> int:
    """A 63-bit hash of bytes (blake2b, 8 bytes, little-endian, top bit cleared): stable across processes and
    runs, unlike Python's salted `hash()`, and a non-negative int64."""
    digest = hashlib.blake2b(data, digest_size=8).digest()
    return int.from_bytes(digest, "little") & _MASK63


def key_of(value) -> int:
    """A positive 63-bit key for any example id: `hash63` of its string form; 0 maps to 1, since key 0 must
    never occur."""
    return hash63(str(value).encode("utf-8")) or 1


def check_keys(keys) -> torch.Tensor:
    """Keys as a LongTensor; every key must be > 0 (key 0 owned the whole pool in the released MemSinks code)."""
    keys = torch.as_tensor(keys, dtype=torch.long)
    if keys.numel() and int(keys.min()) <= 0:
        raise ValueError(f"key {int(keys.min())} is invalid; allowed: integers > 0 (0 would be a degenerate id)")
    return keys


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on uint64 arrays (wrap-around arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * _MUL1
    x = (x ^ (x >> np.uint64(27))) * _MUL2
    return x ^ (x >> np.uint64(31))


def key_units(keys, n_units: int, p: float, salt: int = 0, layer: int = 0) -> torch.Tensor:
    """Bool (n_keys, n_units): unit j is on for key k iff the top 53 bits of mix(mix(k ^ mix(salt, layer)) +
    (j+1)·golden) fall below p·2^53, an independent Bernoulli(p) draw per (key, unit) that needs no RNG."""
    keys = check_keys(keys).reshape(-1).cpu().numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        seed = _mix64(np.array([salt * 1_000_003 + layer + 1], dtype=np.uint64) * _GOLDEN)
        base = _mix64(keys ^ seed)
        h = _mix64(base[:, None] + (np.arange(1, n_units + 1, dtype=np.uint64) * _GOLDEN)[None, :])
    threshold = np.uint64(round(p * (1 << 53)))
    return torch.from_numpy((h >> np.uint64(11)) < threshold)


def general_units(n_units: int, p_gen: float, layout: str = "first", salt: int = 0) -> torch.Tensor:
    """Bool (n_units,): the general units, `int(n_units * p_gen)` of them (upstream's rounding)."""
    n_gen = int(n_units * p_gen)
    out = torch.zeros(n_units, dtype=torch.bool)
    if layout == "first":
        out[:n_gen] = True
    else:  # the n_gen units with the smallest salted hash: a fixed pseudo-random choice
        with np.errstate(over="ignore"):
            h = _mix64((np.arange(1, n_units + 1, dtype=np.uint64) + np.uint64(salt)) * _GOLDEN)
        out[torch.from_numpy(np.argsort(h, kind="stable")[:n_gen].astype(np.int64))] = True
    return out


# ---- the hooks --------------------------------------------------------------------------------------------

def down_projections(model: nn.Module, target_modules: str | None = None) -> list[tuple[str, nn.Module]]:
    """(name, module) of the MLP down projections to hook, in block order: the model's own (`find_mlps`) by
    default, else the modules whose full name matches the regex `target_modules`."""
    if target_modules is None:
        return [(block.down_name, block.down) for block in find_mlps(model)]
    pattern = re.compile(target_modules)
    found = [(n, m) for n, m in model.named_modules() if pattern.fullmatch(n)]
    if not found:
        raise ValueError(f"no module of {type(model).__name__} matches target_modules={pattern.pattern!r}; allowed: "
                         "a regex over module names such as 'transformer.h.0.mlp.c_proj' or "
                         "'model.layers.0.mlp.down_proj'")
    return found


class TiedDropout:
    """Forward pre-hooks on a model's MLP down projections, plus the per-batch keys and the eval mode.

    Attach with `attach_tied_dropout(model, config)`. Set keys for a forward with `with td.keys(k):` (shape
    (B,) for one key per row, or (B, T) for one per token, as packed documents); switch evaluation modes
    with `with td.mode("drop"):`. Masks are computed once per batch (per distinct key) and reused in every
    layer. A forward in training mode without keys raises: there is no silent plain forward.
    """

    def __init__(self, model: nn.Module, config: TiedDropoutConfig):
        self.config = config
        self.model_config = getattr(model, "config", None)
        self.targets = down_projections(model, config.target_modules)
        widths = {in_features(m) for _, m in self.targets}
        if len(widths) != 1:
            raise ValueError(f"the hooked down projections have different widths {sorted(widths)}; allowed: one width")
        self.n_units = widths.pop()
        self.general = general_units(self.n_units, config.p_gen, config.layout, config.salt)
        self.pool = (~self.general).nonzero().squeeze(-1)
        self._keys: torch.Tensor | None = None
        self._mode: tuple | None = None  # (mode, rescale, exclude keys) inside a `mode(...)` block
        self._cache: dict = {}
        self.handles = [m.register_forward_pre_hook(self._hook_for(i)) for i, (_, m) in enumerate(self.targets)]

    # -- state --
    @contextlib.contextmanager
    def keys(self, keys):
        """Keys for the forwards inside the block: (B,) or (B, T) integers > 0 (None: no keys)."""
        before = self._keys
        self.set_keys(keys)
        try:
            yield self
        finally:
            self.set_keys(before)

    def set_keys(self, keys) -> None:
        self._keys = None if keys is None else check_keys(keys)
        self._cache.clear()

    @contextlib.contextmanager
    def mode(self, mode: str, *, rescale: str | None = None, exclude=(), keys=None):
        """Evaluation mode for the forwards inside the block (also around `generate()`): `all` (sinks on, as
        their mean), `drop` (sinks off; `rescale` none/code/mass), `seq` (each key's own units; give `keys`
        here or set them). `exclude`: keys whose pool units are zeroed (in `all` and `seq`)."""
        check_choice("mode", mode, MODES)
        check_choice("rescale", rescale or self.config.rescale, RESCALES)
        before_mode, before_keys = self._mode, self._keys
        self._mode = (mode, rescale or self.config.rescale, tuple(int(k) for k in check_keys(list(exclude))))
        if keys is not None:
            self.set_keys(keys)
        self._cache.clear()
        try:
            yield self
        finally:
            self._mode, self._keys = before_mode, before_keys
            self._cache.clear()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    @torch.no_grad()
    def merge(self, mode: str = "drop", *, rescale: str | None = None, exclude=()) -> None:
        """Bake a key-free mode (`drop` or `all`) into the down-projection weights and remove the hooks: the
        model becomes a plain one (loadable without hf_memmit) that computes exactly that mode."""
        if mode not in ("drop", "all"):
            raise ValueError(f"mode={mode!r} cannot be merged; allowed: 'drop', 'all' (they need no keys)")
        for layer, (_, module) in enumerate(self.targets):
            w = module.weight
            with self.mode(mode, rescale=rescale, exclude=exclude):
                scale = self._scale(layer, w, training=False)
            if is_transposed(module):  # Conv1D weight (in, out): scale the input rows
                w.mul_(scale[:, None])
            else:  # nn.Linear weight (out, in): scale the input columns
                w.mul_(scale[None, :])
        self.remove()
        if hasattr(self.model_config, CONFIG_ATTR):  # a merged model must not be hooked again on load
            delattr(self.model_config, CONFIG_ATTR)

    # -- masks --
    def unit_mask(self, keys, layer: int = 0) -> torch.Tensor:
        """Bool (n_keys, n_units): general units plus each key's own pool units (the training mask)."""
        keys = check_keys(keys).reshape(-1)
        layer = layer if self.config.per_layer else 0
        mask = self.general.expand(len(keys), -1).clone()
        mask[:, self.pool] = key_units(keys, len(self.pool), self.config.p_mem, self.config.salt, layer)
        return mask

    def _excluded(self, exclude: tuple, layer: int) -> torch.Tensor:
        if not exclude:
            return torch.zeros(self.n_units, dtype=torch.bool)
        return (self.unit_mask(torch.tensor(exclude), layer) & ~self.general).any(0)

    def _keyed_scale(self, layer: int, exclude: tuple, x: torch.Tensor) -> torch.Tensor:
        keys = self._keys
        if keys.dim() == 2 and keys.shape[1] != x.shape[1] and bool((keys == keys[:, :1]).all()):
            keys = keys[:, 0]  # one key per row: broadcast over any length (generate with a KV cache)
        if keys.dim() == 1 or bool((keys == keys[:, :1]).all()):
            rows = keys if keys.dim() == 1 else keys[:, 0]
            mask = self.unit_mask(rows.cpu(), layer) & ~self._excluded(exclude, layer)
            return mask.to(x.device, x.dtype).unsqueeze(1)  # (B, 1, units)
        if keys.shape[:2] != x.shape[:2]:
            raise ValueError(f"per-token keys of shape {tuple(keys.shape)} do not match the hidden states "
                             f"{tuple(x.shape[:2])}")
        uniq, inverse = torch.unique(keys.cpu(), return_inverse=True)  # one mask per document, gathered per token
        mask = self.unit_mask(uniq, layer) & ~self._excluded(exclude, layer)
        return mask.to(x.device, x.dtype)[inverse.to(x.device)]  # (B, T, units)

    def _fixed_scale(self, mode: str, rescale: str, layer: int, exclude: tuple, x: torch.Tensor) -> torch.Tensor:
        g, p = self.config.p_gen, self.config.p_mem
        scale = torch.zeros(self.n_units, dtype=torch.float32)
        if mode == "all":
            scale[self.general] = 1.0
            scale[self.pool] = p
            scale[self._excluded(exclude, layer)] = 0.0
        else:
            scale[self.general] = {"none": 1.0, "code": (g + p) / g, "mass": (g + (1 - g) * p) / g}[rescale]
        return scale.to(x.device, x.dtype)

    def _scale(self, layer: int, x: torch.Tensor, training: bool) -> torch.Tensor:
        if training and self._mode is None:
            mode, rescale, exclude = "train", None, ()
        else:
            mode, rescale, exclude = self._mode or (self.config.eval_mode, self.config.rescale, ())
        slot = (mode, layer if self.config.per_layer else 0, x.device, x.dtype, x.shape[1] if x.dim() > 2 else 0)
        if slot in self._cache:
            return self._cache[slot]
        if mode in ("train", "seq"):
            if self._keys is None:
                raise RuntimeError(f"tied dropout in {'training' if mode == 'train' else 'seq'} mode needs the keys "
                                   "of the batch (example or sequence ids), and none were set: train through "
                                   "ExampleTiedDropoutTrainer/MemSinksTrainer, or wrap the call in "
                                   "`with td.keys(ids):`")
            scale = self._keyed_scale(layer, exclude, x)
        else:
            scale = self._fixed_scale(mode, rescale, layer, exclude, x)
        self._cache[slot] = scale
        return scale

    def _hook_for(self, layer: int):
        def hook(module, args):
            x = args[0]
            return (x * self._scale(layer, x, module.training), *args[1:])

        return hook


def attach_tied_dropout(model: nn.Module, config: TiedDropoutConfig | None = None) -> TiedDropout:
    """Hook tied dropout onto `model` (a second call replaces the first). Without `config`, reads the one a
    checkpoint saved in `model.config.tied_dropout`. The config goes into `model.config`, so `save_pretrained`
    keeps it; the weights stay a plain model (`from_pretrained` gives the model without hooks)."""
    if config is None:
        saved = getattr(getattr(model, "config", None), CONFIG_ATTR, None)
        if saved is None:
            raise ValueError(f"{type(model).__name__} has no saved tied-dropout config; pass `config=`")
        config = TiedDropoutConfig.from_dict(saved)
    old = getattr(model, "_tied_dropout", None)
    if old is not None:
        old.remove()
    td = TiedDropout(model, config)
    model.__dict__["_tied_dropout"] = td  # a plain attribute: not a submodule, not in the state dict
    if getattr(model, "config", None) is not None:
        setattr(model.config, CONFIG_ATTR, config.to_dict())
    return td


def get_tied_dropout(model: nn.Module) -> TiedDropout:
    td = getattr(model, "_tied_dropout", None) or getattr(getattr(model, "module", None), "_tied_dropout", None)
    if td is None:
        raise ValueError(f"{type(model).__name__} has no tied dropout attached; call attach_tied_dropout first")
    return td


def tied_dropout_mode(model: nn.Module, mode: str, *, rescale: str | None = None, exclude=(), keys=None):
    """`with tied_dropout_mode(model, "drop"):` the evaluation mode of a model with tied dropout attached."""
    return get_tied_dropout(model).mode(mode, rescale=rescale, exclude=exclude, keys=keys)


# ---- the Trainer ------------------------------------------------------------------------------------------

class TiedDropoutTrainer(Trainer):
    """Trainer that hooks tied dropout onto its model and feeds each batch's keys (the `tied_keys` entry the
    collator adds) to the hooks. The loss is Trainer's own (same `num_items_in_batch` handling), so
    `loss_is_scaled_for_ga` keeps Trainer's rule. Keys stay set through backward (gradient checkpointing
    recomputes the forward there) and are cleared when the step ends."""

    keys_input = "tied_keys"

    def __init__(self, *args, method_config: TiedDropoutConfig, **kwargs):
        super().__init__(*args, **kwargs)
        if self.model is None:
            raise ValueError(f"{type(self).__name__} needs `model=` (model_init is not supported)")
        self.tied_dropout = attach_tied_dropout(self.model, method_config)

    def keep_columns(self, collator, columns: list[str]):
        """`collator`, receiving `columns` (ids) as well. Trainer's `remove_unused_columns` would drop them
        before any collator sees them (`Trainer._remove_unused_columns`), so turn it off and filter the other
        columns here, as Trainer would have."""
        if not self.args.remove_unused_columns:
            return collator
        self.args.remove_unused_columns = False
        forward = list(inspect.signature(self.model.forward).parameters)
        return RemoveColumnsCollator(collator, [*forward, "label", "label_ids", *self.label_names, *columns])

    def missing_keys_message(self, inputs: dict) -> str:
        return (f"{type(self).__name__}: the training batch has no {self.keys_input!r} (columns: "
                f"{sorted(inputs)}); the keys decide each row's units, so training cannot go on without them")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        keys = inputs.pop(self.keys_input, None)
        if keys is None and model.training:
            raise ValueError(self.missing_keys_message(inputs))
        if keys is not None:
            self.tied_dropout.set_keys(keys)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        try:
            return super().training_step(model, inputs, num_items_in_batch=num_items_in_batch)
        finally:
            self.tied_dropout.set_keys(None)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # keys are set here: without labels Trainer calls the model directly, not compute_loss
        self.tied_dropout.set_keys(inputs.pop(self.keys_input, None))
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        finally:
            self.tied_dropout.set_keys(None)


__all__ = ["CONFIG_ATTR", "LAYOUTS", "MODES", "RESCALES", "TiedDropout", "TiedDropoutConfig", "TiedDropoutTrainer",
           "attach_tied_dropout", "check_keys", "down_projections", "general_units", "get_tied_dropout", "hash63",
           "key_of", "key_units", "tied_dropout_mode"]
