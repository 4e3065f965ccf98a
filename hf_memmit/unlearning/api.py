"""`unlearn`: fit any registered unlearning method into a PEFT adapter (a mask, or LoRA for the loss-based methods)."""

from __future__ import annotations

import dataclasses
import warnings

from peft import PeftModel, get_peft_model
from peft.utils.error import NoMatchingPeftModuleError
from torch import nn
from transformers.pytorch_utils import Conv1D

from ..compat import quiet_peft_wrapping
from ..utils import process_state
from .data import as_rows, check_disjoint
from .parallel import ONE_PROCESS, DeepSpeedSplit, Split, is_deepspeed
from .registry import METHODS, get_method
from .stopping import ForgetCheck, prompt_lengths_of


def unlearn(model, config, forget, retain=None, *, batch_size=None, progress=True,
            adapter_name="default", accelerator=None) -> PeftModel:
    """Fit the unlearning method of `config` and return the model with the fitted adapter: a weight or neuron
    mask for the mask methods, peft's LoRA for the loss-based ones (`GradientAscentConfig`, ...).

    Args:
        model: a causal LM (e.g. `GPT2LMHeadModel`, `LlamaForCausalLM`), modified in place like
            `peft.get_peft_model` does; or a `PeftModel` of the same tuner, which gets one more adapter.
        config: a method config (`BalancedSubnetConfig(ratio=0.3)`, ...); it is copied, not modified.
        forget: the rows to unlearn: a `datasets.Dataset` with an `input_ids` column (equal-length rows,
            optional `attention_mask` and `id`) or a LongTensor [n, T]. Not empty.
        retain: rows whose loss must not suffer (same formats); needed by the methods registered with
            `needs_retain` (Greedy, BalancedSubnet, GradDiff, NPO, SimNPO), ignored by the others. Must be disjoint from `forget`: checked by `id` when both sets have one, else by
            identical rows.
        batch_size: overrides `config.batch_size` (and is recorded in the adapter's config).
        progress: show tqdm bars. adapter_name: name of the new adapter.
        accelerator: an `accelerate.Accelerator` or `PartialState`; by default a launch is detected
            (`accelerate launch` with N processes). The methods registered with `data_parallel` (Subnet,
            BalancedSubnet, the loss-based ones) then fit data-parallel: each process takes a slice of every
            step's batch and the gradients are summed, so the adapter equals one process's at the same global
            batch (`batch_size` is the global batch). Each process must hold the same model and rows; the other
            methods fit whole on every process. An `Accelerator` with a DeepSpeed plugin (ZeRO-3: parameters and
            the mask's float32 scores partitioned over the processes) fits Subnet and BalancedSubnet through the
            DeepSpeed engine, the same steps again; the stopping check then runs on every process over all
            rows, in the model's own dtype. The model stays partitioned afterwards: save the adapter (its
            bit-packed mask is whole on every process) and apply it where the model fits.

    The loss of a row is its mean next-token cross-entropy (positions with attention_mask 0 ignored). Fitting
    runs with the model in eval mode (dropout off, so masks are chosen on the model that will be used) and
    only the new adapter active; the model's train/eval mode is restored afterwards. The returned adapter is
    active alone; `peft_model.base_model.set_adapter([...])` combines adapters (their masks multiply).

    Configs with a `forget_check_every` field (Subnet, BalancedSubnet, the loss-based methods) can stop early: every `forget_check_every`
    optimizer steps the forget rows are checked with the (k, l) check (k from the forget Dataset's `prompt_length`
    column) and fitting stops once none is extractable; the returned model's `unlearning_log` holds the
    checks, and a warning says when the schedule ended with rows still extractable. With `forget_check_rows`, a
    check looks at a random sample of that many forget rows first, and at all of them only when the sample has
    none extractable (a large forget set stays cheap to check often).
    """
    method = get_method(config)
    config = dataclasses.replace(config, **({} if batch_size is None else {"batch_size": batch_size}))

    forget_rows = as_rows(forget, "forget")
    if len(forget_rows) == 0:
        raise ValueError("forget set is empty; allowed: at least one row (the rows to unlearn)")
    retain_rows = as_rows(retain, "retain") if retain is not None else None
    if retain_rows is not None and len(retain_rows) == 0:
        retain_rows = None
    if method.needs_retain and retain_rows is None:
        raise ValueError(f"method {method.name!r} needs a retain set; got retain={retain!r}; allowed: a non-empty "
                         "set of rows to keep, disjoint from forget")
    if retain_rows is not None:
        check_disjoint(forget_rows, retain_rows)
        if not method.needs_retain:
            warnings.warn(f"method {method.name!r} uses only the forget set; the retain set is ignored")

    forget_check_every = getattr(config, "forget_check_every", None)
    lengths = prompt_lengths_of(forget, len(forget_rows)) if forget_check_every else None
    state = accelerator if accelerator is not None else process_state()
    if is_deepspeed(state):
        if not method.deepspeed:
            allowed = ", ".join(name for name, m in METHODS.items() if m.deepspeed)
            raise ValueError(f"method {method.name!r} does not fit under DeepSpeed; allowed under a DeepSpeed "
                             f"accelerator: {allowed} (or launch without DeepSpeed)")
        if not hasattr(state, "prepare"):  # launched with DeepSpeed, no Accelerator given: one from the launch
            from accelerate import Accelerator

            state = Accelerator()
        split = DeepSpeedSplit(state)
    else:
        split = Split(state if state.num_processes > 1 and method.data_parallel else None)
    if state.num_processes > 1 and not method.data_parallel and state.is_main_process:
        warnings.warn(f"method {method.name!r} does not split its work across processes; each of the "
                      f"{state.num_processes} processes fits it whole (same adapter, no speed-up)")
    peft_model = _attach(model, config, adapter_name)
    stop = (ForgetCheck(peft_model, forget_rows.input_ids, lengths, sample_rows=config.forget_check_rows,
                        seed=config.seed, split=split if split.splits_checks else ONE_PROCESS,
                        fp32=split.check_fp32) if forget_check_every else None)
    was_training = peft_model.training
    peft_model.eval()
    try:
        extra = {"stop": stop} if stop is not None else {}
        if method.data_parallel:
            extra["split"] = split
        method.fit(peft_model, config, forget_rows, retain_rows, adapter_name=adapter_name,
                   progress=progress and state.is_main_process, **extra)
    finally:
        peft_model.train(was_training)
    if stop is not None:
        peft_model.unlearning_log = stop.report()
        if stop.stopped_at is None:
            warnings.warn(f"{method.name}: reached the end of its schedule (max_steps={config.max_steps}, "
                          f"epochs={config.epochs}) with {stop.last_seen()} forget rows still extractable at the "
                          "last check; raise max_steps or ratio")
    return peft_model


def _attach(model, config, adapter_name: str) -> PeftModel:
    try:
        if isinstance(model, PeftModel):
            if adapter_name in model.peft_config:
                raise ValueError(f"adapter_name={adapter_name!r} already exists; allowed: a new name "
                                 f"(existing: {', '.join(model.peft_config)})")
            model.add_adapter(adapter_name, config)
            model.set_adapter(adapter_name)
            return model
        with quiet_peft_wrapping():
            return get_peft_model(model, config, adapter_name=adapter_name)
    except NoMatchingPeftModuleError as err:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))})
        raise ValueError(
            f"target_modules={config.target_modules!r} matches no module of {type(model).__name__}; allowed: "
            f"module names (suffix match) or one regex (full match) of its linear layers, e.g. {names}"
        ) from err
