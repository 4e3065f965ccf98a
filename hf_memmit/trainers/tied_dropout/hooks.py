"""The hooks: tied dropout attached to a model's MLP down projections, and its modes (training with each key's
own units; `all`, `drop`, `seq` at evaluation) as a context manager. This is the inference side: a deployed
model with tied dropout is switched with `tied_dropout_mode`."""

from __future__ import annotations

import contextlib
import re

import torch
from torch import nn

from ...models.mlp import find_mlps, in_features, is_transposed
from ...utils import check_choice
from .config import CONFIG_ATTR, MODES, RESCALES, TiedDropoutConfig
from .keys import check_keys, general_units, key_units


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
