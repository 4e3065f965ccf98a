"""Does greedy decoding from a prompt reproduce a target exactly? The one check every caller uses.

Greedy decoding reproduces a target iff, in one teacher-forced forward pass over prompt + target, the argmax
at every target position equals the target token: position j sees the true tokens before
it, which are exactly what greedy decoding would have produced if it matched so far. So the check is one
batched forward pass instead of a token-by-token `generate` loop. `greedy_match_generate` runs the loop
anyway, for cross-checking; both score their tokens with `match_tokens`, as does the `evaluate` metric.

Precision: by default (`fp32=True`) the check computes in float32 whatever the model's dtype, because a
bf16 forward pass flips the argmax of near-tied logits (3 of 605 rows changed on a paper-scale model).
Half-precision weights are upcast in place for the call and cast back afterwards (lossless: float32 holds
every bf16/fp16 value exactly), which costs 2x their memory during the check; an enclosing `autocast` is
switched off. `fp32=False` computes in the model's own dtype (needed e.g. for flash-attention kernels).
`fp32="head"` keeps the body in its own dtype and computes only the final norm and the output embedding in
float32, on the body's last hidden states: the argmax is taken over float32 logits without a float32 copy of
every weight (only the output embedding's, one call at a time).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..compat import quiet_padding_notice
from ..utils import check_choice, device_of

PADDING_SIDES = ("left", "right")
_HALF = (torch.float16, torch.bfloat16)
_MISS = -2  # fills missing prediction positions: never equal to a token id


@dataclass
class GreedyMatch:
    """Per row i: `exact[i]` is True iff greedy decoding reproduces target i; `token_match[i]` is the
    fraction of target positions predicted right; `predictions[i]` are the predicted tokens, one per
    target position. Teacher-forced, a prediction is the argmax given the true tokens before it (so
    `token_match` is teacher-forced accuracy); from `generate`, the free-running continuation."""

    exact: torch.Tensor
    token_match: torch.Tensor
    predictions: list[list[int]]

    def summary(self) -> dict:
        """Fraction of rows reproduced exactly, counts, and the mean per-row token match."""
        n = len(self.exact)
        memorized = int(self.exact.sum())
        return {"memorized_fraction": memorized / n, "memorized": memorized, "total": n,
                "token_match": float(self.token_match.mean())}


def _as_lists(rows, what: str) -> list[list[int]]:
    if isinstance(rows, torch.Tensor):
        if rows.dim() != 2:
            raise ValueError(f"{what} must be a 2-D tensor or a list of token-id lists, got shape {tuple(rows.shape)}")
        return rows.tolist()
    return [list(map(int, r)) for r in rows]


def _vocab_size(model) -> int | None:
    if hasattr(model, "get_input_embeddings") and model.get_input_embeddings() is not None:
        return model.get_input_embeddings().num_embeddings
    return getattr(getattr(model, "config", None), "vocab_size", None)


def check_vocab(model, rows) -> None:
    """Token ids must index the model's embedding: catches a tokenizer/model mismatch before it crashes."""
    vocab = _vocab_size(model)
    if vocab is None:
        return
    top = max((max(r) for r in rows if len(r)), default=-1)
    low = min((min(r) for r in rows if len(r)), default=0)
    if top >= vocab or low < 0:
        bad = top if top >= vocab else low
        raise ValueError(f"token id {bad} is outside the model's vocabulary [0, {vocab}): the sequences were "
                         "tokenized with a different tokenizer than this model's")


def _check_pairs(model, prompts, targets) -> tuple[list[list[int]], list[list[int]]]:
    prompts, targets = _as_lists(prompts, "prompts"), _as_lists(targets, "targets")
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets; they must pair up")
    if not prompts:
        raise ValueError("no rows to measure: prompts and targets are empty")
    if any(len(p) == 0 for p in prompts) or any(len(t) == 0 for t in targets):
        raise ValueError("every prompt and every target needs at least one token")
    check_vocab(model, prompts + targets)
    return prompts, targets


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive integer")


FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "final_layer_norm")  # a decoder's last norm, by family


def _final_norm(lm) -> torch.nn.Module | None:
    decoder = lm.get_decoder() if hasattr(lm, "get_decoder") else None
    for name in FINAL_NORMS:
        module = getattr(decoder, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    return None


@contextlib.contextmanager
def _head_in_fp32(model):
    """The final norm (its parameters upcast in place, its input cast to float32) and the output embedding
    (computed as F.linear in float32, on a temporary float32 copy of its weight, which may be tied to the input
    embedding and so is not upcast in place) run in float32; the body keeps its dtype. An output embedding that a
    `device_map` offloaded is held on its device for the call (`align_module_device`), and the forward that
    Accelerate installed on it comes back afterwards."""
    from accelerate.utils import align_module_device
    from transformers.trainer_utils import unwrap_peft_model

    lm = unwrap_peft_model(model)
    head = lm.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        raise ValueError(f"fp32='head' needs an nn.Linear output embedding; {type(lm).__name__} has "
                         f"{type(head).__name__}; allowed: fp32=True for this model")
    norm = _final_norm(lm)
    halves = {name: p.dtype for name, p in (norm.named_parameters() if norm is not None else ()) if p.dtype in _HALF}
    handles = []
    own_forward = head.__dict__.get("forward")  # Accelerate's device hooks live in an instance attribute
    aligned = align_module_device(head)
    try:
        aligned.__enter__()
        with torch.inference_mode(False):
            for name in halves:
                p = norm.get_parameter(name)  # by name, as in `compute_precision`
                p.data = p.data.float()
        if norm is not None:
            handles.append(norm.register_forward_pre_hook(lambda module, args: tuple(
                a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)))

        def head_forward(hidden):
            bias = None if head.bias is None else head.bias.float()
            return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)

        head.forward = head_forward
        yield
    finally:
        if own_forward is None:
            del head.forward  # back to the class's forward
        else:
            head.forward = own_forward
        aligned.__exit__(None, None, None)
        for handle in handles:
            handle.remove()
        with torch.inference_mode(False):
            for name, dtype in halves.items():
                p = norm.get_parameter(name)
                p.data = p.data.to(dtype)


@contextlib.contextmanager
def compute_precision(model, fp32: bool | str = True):
    """Eval mode, and with `fp32=True`, float32 compute: half-precision parameters and buffers are upcast in
    place and restored to their own dtype on exit; autocast is off inside. `fp32="head"`: only the final norm
    and the output embedding compute in float32 (see the module doc), autocast off as well; False: the model's
    own dtype."""
    if not (fp32 is True or fp32 is False or fp32 == "head"):
        raise ValueError(f"fp32={fp32!r} is not supported; allowed: True, False, 'head'")
    was_training = model.training
    model.eval()
    # by name: a `device_map` that offloaded a layer gives it new tensors every time the layer runs
    halves = {name: t.dtype for name, t in itertools.chain(model.named_parameters(), model.named_buffers())
              if fp32 is True and t.dtype in _HALF}
    try:
        with torch.inference_mode(False):  # under a caller's inference_mode the weights must stay normal tensors
            for name in halves:
                t = _tensor(model, name)
                t.data = t.data.float()
        with _head_in_fp32(model) if fp32 == "head" else contextlib.nullcontext(), \
                torch.autocast(device_of(model).type, enabled=False) if fp32 else contextlib.nullcontext():
            yield
    finally:
        with torch.inference_mode(False):
            for name, dtype in halves.items():
                t = _tensor(model, name)
                t.data = t.data.to(dtype)
        model.train(was_training)


def _tensor(model, name: str) -> torch.Tensor:
    try:
        return model.get_parameter(name)
    except AttributeError:
        return model.get_buffer(name)


def _accepts(model, name: str) -> bool:
    params = inspect.signature(model.forward).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _right_aligned(rows: list[list[int]], width: int, fill: int) -> torch.Tensor:
    out = torch.full((len(rows), width), fill, dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            out[i, width - len(r):] = torch.tensor(r)
    return out


def _score(pred: torch.Tensor, want: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-aligned (rows, width) predictions vs targets; target positions < 0 are padding."""
    valid = want >= 0
    hit = (pred == want) & valid
    return (hit | ~valid).all(-1), hit.sum(-1).double() / valid.sum(-1).double()


def _predictions(pred: torch.Tensor, lengths: list[int]) -> list[list[int]]:
    return [row[len(row) - n:] for row, n in zip(pred.tolist(), lengths)]


def match_tokens(predictions, references) -> GreedyMatch:
    """Score predicted continuations against reference targets, row by row (the scoring every path uses).

    A prediction is compared with the first `len(reference)` tokens; missing positions count as misses, so a
    generation that stopped early cannot match. Extra predicted tokens are ignored (`generate` output that
    runs past the target, as the reference's 100-token generations for a 50-token target)."""
    predictions, references = _as_lists(predictions, "predictions"), _as_lists(references, "references")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references; they must pair up")
    if not references:
        raise ValueError("no rows to score: predictions and references are empty")
    if any(len(r) == 0 for r in references):
        raise ValueError("every reference needs at least one token")
    if any(t < 0 for r in references for t in r):
        raise ValueError("reference token ids must be >= 0 (remove padding such as -100 before scoring)")
    width = max(map(len, references))
    pred = [p[:len(r)] + [_MISS] * (len(r) - len(p[:len(r)])) for p, r in zip(predictions, references)]
    exact, frac = _score(_right_aligned(pred, width, _MISS), _right_aligned(references, width, -1))
    return GreedyMatch(exact=exact, token_match=frac, predictions=[p[:len(r)] for p, r in zip(predictions, references)])


def _teacher_forced_batch(model, prompts, targets, pad_token_id: int, side: str, device) -> torch.Tensor:
    """Argmax at every target position, right-aligned to the longest target of the batch."""
    seqs = [p + t[:-1] for p, t in zip(prompts, targets)]
    width, keep = max(map(len, seqs)), max(map(len, targets))
    ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[i, span], mask[i, span] = torch.tensor(seq), 1
    kwargs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    if side == "left":
        # every target ends at the last position: explicit positions undo the shift, and only the last
        # `keep` logits per row are computed, so memory is batch x longest target x vocab
        kwargs["position_ids"] = ((mask.cumsum(-1) - 1).clamp(min=0)).to(device)
        if _accepts(model, "logits_to_keep"):
            kwargs["logits_to_keep"] = keep
    out = model(**kwargs)
    logits = out.logits if hasattr(out, "logits") else out[0]
    if side == "left":
        return logits[:, -keep:].argmax(-1).cpu()
    pred = logits.argmax(-1).cpu()
    # row i predicts target token j at position len(prompt) - 1 + j; gather them right-aligned
    ends = torch.tensor([len(s) for s in seqs])
    cols = (ends[:, None] - keep + torch.arange(keep)[None, :]).clamp(min=0)
    return pred.gather(1, cols)


def _length_batches(lengths: list[int], batch_size: int):
    """Row indices in batches of similar length (less padding); results are put back in input order."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def greedy_match(model, prompts, targets, *, batch_size: int = 64, pad_token_id: int = 0, fp32: bool | str = True,
                 padding_side: str | None = None, progress: bool = False) -> GreedyMatch:
    """Does greedy decoding from each prompt reproduce its target exactly? Teacher-forced, batched.

    `prompts` and `targets` pair up row by row: lists of token-id lists (any length per row, no padding
    inside) or 2-D LongTensors. Rows are grouped by length and padded per batch, so memory is bounded by
    `batch_size` whatever the number of rows: a batch's logits take about batch_size x longest target x
    vocab x 4 bytes (640 MB for 64 rows, l=50 and GPT-2's vocabulary; lower `batch_size` if needed).
    EOS is an ordinary token: a target may contain it, and `pad_token_id` only fills masked positions
    (any valid id works). `padding_side` None picks left padding with position ids (only the target
    logits are computed) when the model's forward takes `position_ids`, else right padding; both give the
    same answer. See the module doc for `fp32`.
    """
    prompts, targets = _check_pairs(model, prompts, targets)
    _check_batch_size(batch_size)
    if padding_side is None:
        padding_side = "left" if _accepts(model, "position_ids") else "right"
    check_choice("padding_side", padding_side, PADDING_SIDES)
    if padding_side == "left" and not _accepts(model, "position_ids"):
        raise ValueError("padding_side='left' needs a model whose forward takes position_ids; use 'right'")
    device = device_of(model)
    pred = [None] * len(prompts)
    batches = _length_batches([len(p) + len(t) for p, t in zip(prompts, targets)], batch_size)
    with compute_precision(model, fp32):
        for idx in tqdm(batches, desc="memorization", disable=not progress, leave=False):
            tgts = [targets[i] for i in idx]
            out = _teacher_forced_batch(model, [prompts[i] for i in idx], tgts, pad_token_id, padding_side, device)
            for i, row in zip(idx, _predictions(out, [len(t) for t in tgts])):
                pred[i] = row
    return match_tokens(pred, targets)


# Generation settings a model's own generation_config may carry that would change plain greedy decoding.
_PLAIN_GREEDY = {"do_sample": False, "num_beams": 1, "eos_token_id": None, "min_length": 0, "min_new_tokens": None,
                 "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "suppress_tokens": None,
                 "begin_suppress_tokens": None, "forced_bos_token_id": None, "forced_eos_token_id": None,
                 "sequence_bias": None, "stop_strings": None, "max_time": None, "use_cache": True}


@torch.no_grad()
def greedy_match_generate(model, prompts, targets, *, batch_size: int = 32, pad_token_id: int = 0,
                          fp32: bool = True, progress: bool = False) -> GreedyMatch:
    """The same check with `model.generate`: greedy, KV cache, left padding with an attention mask, EOS not
    stopping (a target may contain it), `max(len(target))` new tokens per batch. Slower; for cross-checking
    `greedy_match` (its `exact` agrees row by row; its `token_match` is the free-running overlap)."""
    prompts, targets = _check_pairs(model, prompts, targets)
    _check_batch_size(batch_size)
    if not hasattr(model, "generate"):
        raise TypeError(f"{type(model).__name__} has no `generate`; use greedy_match (teacher-forced) instead")
    device = device_of(model)
    pred = [None] * len(prompts)
    with compute_precision(model, fp32):
        for idx in tqdm(_length_batches([len(p) for p in prompts], batch_size), desc="generate",
                        disable=not progress, leave=False):
            ps, new = [prompts[i] for i in idx], max(len(targets[i]) for i in idx)
            width = max(map(len, ps))
            ids = _right_aligned(ps, width, pad_token_id)
            mask = _right_aligned([[1] * len(p) for p in ps], width, 0)
            with quiet_padding_notice():
                out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new,
                                     pad_token_id=pad_token_id, **_PLAIN_GREEDY)
            for i, row in zip(idx, out[:, width:].tolist()):
                pred[i] = row
    return match_tokens(pred, targets)
