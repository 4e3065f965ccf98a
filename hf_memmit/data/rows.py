"""The row schema every TinyMem split shares, so any later step can measure a row without re-deriving it."""

from __future__ import annotations

from datasets import Features, List, Value

FEATURES = Features({
    "id": Value("string"),                  # stable across runs of the same config; twins share it
    "task": Value("string"),                # e.g. "mult_7", "mult_2", "wiki"
    "input_ids": List(Value("int32")),      # what the model trains on (the artifact, if any)
    "clean_input_ids": List(Value("int32")),  # the clean twin (== input_ids for clean rows)
    "artifact": Value("string"),            # "none" | "noise" | "backdoor"
    "prompt_length": Value("int32"),        # k: tokens given as prompt when measuring this row
    "dup_class": Value("int32"),            # e: the row appears 10**e times in train
})


def make_row(id: str, task: str, input_ids, clean_input_ids, artifact: str, prompt_length: int,
             dup_class: int) -> dict:
    return {"id": id, "task": task, "input_ids": list(map(int, input_ids)),
            "clean_input_ids": list(map(int, clean_input_ids)), "artifact": artifact,
            "prompt_length": int(prompt_length), "dup_class": int(dup_class)}
