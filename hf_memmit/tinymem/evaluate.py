"""What a TinyMem run reports: memorization of its artifact rows and accuracy (math) or perplexity (language) on
the clean test rows, during training (a callback), after it and around each mitigation."""

from __future__ import annotations

from ..metrics import MemorizationCallback, measure_memorization, perplexity, token_accuracy


def artifact_rows(dataset, artifact: str):
    """The rows whose memorization a run reports: the held-out backdoored rows for backdoors (a backdoor is
    learned when it fires on unseen triggers), the artifact rows of the training set otherwise."""
    return dataset["backdoor_test" if artifact == "backdoor" else "forget"]


def evaluate_tinymem(model, dataset, task: str, artifact: str, batch_size: int = 128, progress: bool = False) -> dict:
    """Memorization of the artifact rows (the held-out backdoored rows for backdoors) plus accuracy (math) or
    perplexity (language) on the clean test rows: the numbers a TinyMem run reports during and after training."""
    mem = measure_memorization(model, artifact_rows(dataset, artifact), batch_size=batch_size, progress=progress)
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


class TinyMemMetricsCallback(MemorizationCallback):
    """Logs memorization of the artifact rows and accuracy/perplexity on the clean test rows every
    `every_steps` optimizer steps and at the end, into `state.log_history` (so the curve survives resume).
    The schedule is `MemorizationCallback`'s; what is measured is `evaluate_tinymem`, and `progress` (if given)
    is called with each new record."""

    def __init__(self, dataset, task: str, artifact: str, every_steps: int, batch_size: int = 128, progress=None):
        super().__init__(artifact_rows(dataset, artifact), every_steps=max(1, every_steps), at_evaluate=False,
                         batch_size=batch_size)
        self.dataset, self.task, self.artifact, self.progress = dataset, task, artifact, progress

    @property
    def marker(self) -> str:
        return "memorized"

    def evaluate(self, model) -> dict[str, float]:
        return evaluate_tinymem(model, self.dataset, self.task, self.artifact, self.options["batch_size"])

    def measure(self, model, step: int) -> dict[str, float]:
        return self.evaluate(model)

    def _log(self, state, model) -> dict | None:
        record = super()._log(state, model)
        if record is not None and self.progress is not None:
            self.progress(record)
        return record
