"""Log (k, l) memorization of a fixed set of rows during any `transformers.Trainer` run."""

from __future__ import annotations

from transformers import TrainerCallback

from .memorization import MemorizationResult, measure_memorization


class MemorizationCallback(TrainerCallback):
    """Measures memorization of `rows` (TinyMem rows or a user's own: see `measure_memorization`) with the
    same function as everything else, and records it in `state.log_history`:

    - every `every_steps` optimizer steps and at the end of training, as its own record
      (`{"step", "epoch", "<name>_fraction", ...}`); `every_steps=None` turns this off;
    - at each evaluation (`at_evaluate=True`), as `eval_<name>_...` keys added to the evaluation metrics
      (so `metric_for_best_model="eval_<name>_fraction"` with `greater_is_better=False` can select on it)
      and merged into that step's evaluation record.

    A step measured twice (a logging step that is also an evaluation step) is measured once. Every process
    measures, so the logs agree across ranks. The model is put back in training mode afterwards.

    Subclasses change what is measured by overriding `measure` (and `marker`, the key that tells their records
    apart in `log_history`); the schedule stays here (`hf_memmit.tinymem.TinyMemMetricsCallback` adds accuracy).
    """

    def __init__(self, rows, *, every_steps: int | None = None, at_evaluate: bool = True, name: str = "memorization",
                 target_length: int = 50, prompt_length: int | None = None, batch_size: int = 64, fp32: bool = True,
                 pad_token_id: int = 0):
        if every_steps is not None and (not isinstance(every_steps, int) or every_steps < 1):
            raise ValueError(f"every_steps={every_steps!r} must be a positive integer or None")
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError("no rows to measure: the set is empty")
        self.every_steps, self.at_evaluate, self.name = every_steps, at_evaluate, name
        self.options = {"target_length": target_length, "prompt_length": prompt_length, "batch_size": batch_size,
                        "fp32": fp32, "pad_token_id": pad_token_id}
        self.last_result: MemorizationResult | None = None
        self._cache: tuple[int, dict] | None = None

    def metrics(self, result: MemorizationResult) -> dict[str, float]:
        """The logged keys: fraction, counts, clean-continuation fraction and per duplication class."""
        n = self.name
        out = {f"{n}_fraction": result.fraction, f"{n}_memorized": result.memorized, f"{n}_total": result.total,
               f"{n}_clean_fraction": result.clean_fraction}
        if len(result.per_class) > 1:
            out.update({f"{n}_dup{c}_fraction": v["fraction"] for c, v in result.per_class.items()})
        return out

    @property
    def marker(self) -> str:
        """A key every record of this callback carries (so a step already logged is not logged twice)."""
        return f"{self.name}_fraction"

    def measure(self, model, step: int) -> dict[str, float]:
        if self._cache is None or self._cache[0] != step:
            self.last_result = measure_memorization(model, self.rows, **self.options)
            self._cache = (step, self.metrics(self.last_result))
        return self._cache[1]

    def _log(self, state, model) -> dict | None:
        """Append this step's record to `log_history` and return it (None: the step was logged already)."""
        if any(e.get("step") == state.global_step and self.marker in e for e in state.log_history):
            return None
        values = self.measure(model, state.global_step)
        record = {**values, "epoch": round(state.epoch or 0.0, 4), "step": state.global_step}
        state.log_history.append(record)
        return record

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps and state.global_step % self.every_steps == 0:
            self._log(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.every_steps:
            self._log(state, model)

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        if not self.at_evaluate or model is None:
            return
        values = {f"eval_{k}": v for k, v in self.measure(model, state.global_step).items()}
        if metrics is not None:
            metrics.update(values)
        # Trainer logged the evaluation record just before this call: add to it rather than a new record
        last = state.log_history[-1] if state.log_history else {}
        if last.get("step") == state.global_step and any(k.startswith("eval_") for k in last):
            last.update(values)
        else:
            state.log_history.append({**values, "epoch": round(state.epoch or 0.0, 4), "step": state.global_step})
