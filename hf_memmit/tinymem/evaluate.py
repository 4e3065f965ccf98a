"""What a TinyMem run reports: memorization of its artifact rows and accuracy (math) or perplexity (language) on
the clean test rows, during training (a callback), after it and around each mitigation."""

from __future__ import annotations

from transformers import TrainerCallback

from ..metrics import measure_memorization, perplexity, token_accuracy


def evaluate_tinymem(model, dataset, task: str, artifact: str, batch_size: int = 128, progress: bool = False) -> dict:
    """Memorization of the artifact rows (the held-out backdoored rows for backdoors) plus accuracy (math) or
    perplexity (language) on the clean test rows: the numbers a TinyMem run reports during and after training."""
    rows = dataset["backdoor_test" if artifact == "backdoor" else "forget"]
    mem = measure_memorization(model, rows, batch_size=batch_size, progress=progress)
    out = {"memorized": mem.fraction, "memorized_count": mem.memorized, "qualifying": mem.total,
           "clean_continuation": mem.clean_fraction}
    for cls, c in mem.per_class.items():
        out[f"memorized_dup{cls}"] = c["fraction"]
    if task == "math":
        acc = token_accuracy(model, dataset["test"], pad_token_id=13, batch_size=batch_size)
        out.update(accuracy=acc["average"]["accuracy"], accuracy_no_pad=acc["average"]["accuracy_no_pad"],
                   accuracy_main=acc[next(t for t in acc if t.endswith("_7"))]["accuracy"])
    else:
        ppl = perplexity(model, dataset["test"], batch_size=batch_size)
        out.update(perplexity=ppl["corpus"], perplexity_mean_batch_exp=ppl["mean_batch_exp"])
    return out


def measure_model(model, dataset, task: str, artifact: str, batch_size: int = 64) -> dict:
    """`evaluate_tinymem`'s numbers, arranged for a table: counts as "memorized/qualifying", per-class rows
    only when there are several classes."""
    m = evaluate_tinymem(model, dataset, task, artifact, batch_size, progress=True)
    out = {"memorized": m["memorized"], "memorized_rows": f"{m['memorized_count']}/{m['qualifying']}",
           "continues_cleanly": m["clean_continuation"]}
    dup = {k: v for k, v in m.items() if k.startswith("memorized_dup")}
    out.update(dup if len(dup) > 1 else {})
    keys = ("accuracy", "accuracy_no_pad") if task == "math" else ("perplexity", "perplexity_mean_batch_exp")
    out.update({k: m[k] for k in keys})
    return out


class TinyMemMetricsCallback(TrainerCallback):
    """Logs memorization of the artifact rows and accuracy/perplexity on the clean test rows every
    `every_steps` optimizer steps and at the end, into `state.log_history` (so the curve survives resume)."""

    def __init__(self, dataset, task: str, artifact: str, every_steps: int, batch_size: int = 128, progress=None):
        self.dataset, self.task, self.artifact = dataset, task, artifact
        self.every_steps, self.batch_size, self.progress = max(1, every_steps), batch_size, progress

    def evaluate(self, model) -> dict[str, float]:
        return evaluate_tinymem(model, self.dataset, self.task, self.artifact, self.batch_size)

    def _log(self, state, model):
        if any(e.get("step") == state.global_step and "memorized" in e for e in state.log_history):
            return
        record = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **self.evaluate(model)}
        state.log_history.append(record)
        if self.progress is not None:
            self.progress(record)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every_steps == 0:
            self._log(state, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._log(state, model)
