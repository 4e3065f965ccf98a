"""Records in, windows out: a user's own records (customer rows, secrets) cut into (prompt, target) windows.

A memorization scan asks, for each k-token prompt taken from a record, whether greedy decoding reproduces
the next l tokens (extractable memorization, Carlini et al., 2021/2023). This module does the data part:
`load_records` reads the records from a file or a `datasets` object, `tokenize_records` turns text into the
model's own token ids, and `make_windows` cuts every record into (k, l) windows. The check itself is
`hf_memmit.metrics.scan_windows`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets import Dataset, DatasetDict, Features, LargeList, List, Sequence, Value, load_dataset

# File suffix -> `datasets` packaged builder; these load local files offline.
RECORD_FILE_TYPES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}

WINDOW_FEATURES = Features({
    "record_id": Value("string"),
    "offset": Value("int64"),               # token offset of the window start (the prompt) in the record
    "prompt_ids": List(Value("int64")),     # k tokens
    "target_ids": List(Value("int64")),     # the l tokens that follow
    "input_ids": List(Value("int64")),      # prompt + target: a row of an unlearning forget set
})


@dataclass
class WindowStats:
    """How `make_windows` cut the records: `records` in, `windows` out, and the `short_records` (ids in
    `short_record_ids`) that had fewer than k + l tokens and so gave no window."""

    records: int
    short_records: int
    windows: int
    short_record_ids: list[str] = field(default_factory=list)
    k: int | None = None
    l: int | None = None
    stride: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def load_records(source, *, text_column: str = "text", split: str | None = None) -> Dataset:
    """Load records as a `datasets.Dataset` with columns `record_id` and either `text` or `input_ids`.

    `source`: a path to a .jsonl/.json, .csv, .parquet or .txt file (or a list of paths of one type), a
    `datasets.Dataset`, or a `datasets.DatasetDict` (`split` picks the split; default: the only one, else
    "train"). A .txt file holds one record per line; empty lines are dropped. Other files hold one record
    per row, its text in `text_column`, or pre-tokenized token ids in an `input_ids` column (lists of ints);
    when both are present `input_ids` wins, as it is exactly what the model saw.

    `record_id` is the source's `record_id` column if present, else its `id` column, else the row index
    (after dropping empty .txt lines), always as a string; ids must be unique, since the scan reports per
    record. Other columns are dropped.
    """
    ds, where, is_txt = _as_dataset(source, split)
    if is_txt:  # the `text` builder: one line per row, in column "text"
        text_column = "text"
        ds = ds.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    if len(ds) == 0:
        raise ValueError(f"{where} has no records; allowed: at least one record")
    columns = ds.column_names
    if "input_ids" in columns:
        if not _is_int_list(ds.features["input_ids"]):
            raise ValueError(f"{where} column 'input_ids' has type {ds.features['input_ids']}; allowed: lists of "
                             "integer token ids (or give the text in a text column and no 'input_ids')")
        content = "input_ids"
    elif text_column in columns:
        content = text_column
    else:
        raise ValueError(f"{where} has no text column {text_column!r} and no 'input_ids' column; columns found: "
                         f"{columns}; pass text_column= one of them")
    id_column = "record_id" if "record_id" in columns else "id" if "id" in columns else None

    def convert(batch, indices):
        ids = batch[id_column] if id_column else indices
        out = {"record_id": [str(i) for i in ids]}
        if content == "input_ids":
            out["input_ids"] = batch["input_ids"]
        else:
            out["text"] = ["" if t is None else str(t) for t in batch[content]]
        return out

    features = Features({"record_id": Value("string"),
                         **({"input_ids": ds.features["input_ids"]} if content == "input_ids"
                            else {"text": Value("string")})})
    ds = ds.map(convert, batched=True, with_indices=True, remove_columns=columns, features=features)
    _check_unique(ds["record_id"], where)
    return ds


def tokenize_records(records: Dataset, tokenizer, *, add_special_tokens: bool | None = None) -> Dataset:
    """Add `input_ids`: each record's text tokenized with the model's own tokenizer (batched map).

    Windows should look like the text did in training. By default (`add_special_tokens=None`) no special
    token is put inside or after a record: the text is tokenized with `add_special_tokens=False`, and the
    tokenizer's BOS id is prepended iff the tokenizer adds a BOS by default (Llama-style tokenizers do,
    GPT-2's does not), so a window at offset 0 starts like a training document. `True` uses the tokenizer's
    own template (which may also append EOS); `False` adds nothing. Records that already have `input_ids`
    pass through unchanged (no tokenizer needed).
    """
    if not isinstance(records, Dataset):
        raise TypeError(f"records is a {type(records).__name__}; allowed: a datasets.Dataset (see load_records)")
    if "input_ids" in records.column_names:
        return records
    if "text" not in records.column_names:
        raise ValueError(f"records have no 'text' or 'input_ids' column; columns found: {records.column_names}; "
                         "load them with load_records")
    if tokenizer is None:
        raise ValueError("text records need a tokenizer (the model's own); got tokenizer=None")
    if add_special_tokens not in (None, True, False):
        raise ValueError(f"add_special_tokens={add_special_tokens!r}; allowed: None (BOS as in training), True, "
                         "False")
    prepend = [tokenizer.bos_token_id] if add_special_tokens is None and adds_bos(tokenizer) else []
    special = bool(add_special_tokens)

    def tokenize(batch):
        enc = tokenizer(batch["text"], add_special_tokens=special, return_attention_mask=False, verbose=False)
        return {"input_ids": [prepend + list(ids) for ids in enc["input_ids"]]}

    return records.map(tokenize, batched=True)


def adds_bos(tokenizer) -> bool:
    """Does the tokenizer put its BOS token first by default (`tokenizer(text)`)?"""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    with_special = tokenizer("a", add_special_tokens=True)["input_ids"]
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    return bool(with_special) and with_special[0] == bos and plain[:1] != [bos]


def make_windows(tokenized: Dataset, *, k: int = 32, l: int = 32,
                 stride: int | None = None) -> tuple[Dataset, WindowStats]:
    """Cut each record's `input_ids` into windows of a k-token prompt and the l-token target after it.

    Windows start at token offsets 0, stride, 2 * stride, ... while offset + k + l <= the record's length.
    The default stride k + l gives non-overlapping windows; `stride=1` checks every offset (an audit: about
    k + l times more windows). Records shorter than k + l give no window; they are counted in the returned
    `WindowStats`, not an error, unless every record is that short.

    Columns: `window_id` (position in the output), `record_id`, `offset`, `prompt_ids` (k), `target_ids` (l)
    and `input_ids` (prompt + target, so the windows can serve directly as an unlearning forget set).
    Token ids are not checked against a vocabulary here; the scan does that for its model.
    """
    for name, value in (("k", k), ("l", l), ("stride", k + l if stride is None else stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r} is not valid; allowed: an integer >= 1")
    stride = k + l if stride is None else stride
    if not isinstance(tokenized, Dataset):
        raise TypeError(f"tokenized is a {type(tokenized).__name__}; allowed: a datasets.Dataset with "
                        "'input_ids' (see tokenize_records)")
    if "input_ids" not in tokenized.column_names:
        raise ValueError(f"records have no 'input_ids' column; columns found: {tokenized.column_names}; "
                         "tokenize text records with tokenize_records first")
    if len(tokenized) == 0:
        raise ValueError("no records to cut into windows; allowed: at least one record")
    if "record_id" not in tokenized.column_names:
        tokenized = tokenized.map(lambda b, idx: {"record_id": [str(i) for i in idx]}, batched=True,
                                  with_indices=True)
    ids, lengths = tokenized["record_id"], [len(x) for x in tokenized["input_ids"]]
    short = [str(i) for i, n in zip(ids, lengths) if n < k + l]
    if len(short) == len(lengths):
        raise ValueError(f"every record is shorter than k + l = {k + l} tokens (the longest has {max(lengths)} "
                         "tokens), so there is no window to check; allowed: k + l <= the longest record's length "
                         "(lower k or l)")

    def explode(batch):
        out = {name: [] for name in WINDOW_FEATURES}
        for record_id, tokens in zip(batch["record_id"], batch["input_ids"]):
            tokens = list(tokens)
            for offset in range(0, len(tokens) - k - l + 1, stride):
                prompt, target = tokens[offset:offset + k], tokens[offset + k:offset + k + l]
                out["record_id"].append(str(record_id))
                out["offset"].append(offset)
                out["prompt_ids"].append(prompt)
                out["target_ids"].append(target)
                out["input_ids"].append(prompt + target)
        return out

    windows = tokenized.map(explode, batched=True, remove_columns=tokenized.column_names,
                            features=WINDOW_FEATURES)
    windows = windows.add_column("window_id", list(range(len(windows))), feature=Value("int64"))
    windows = windows.select_columns(["window_id", *WINDOW_FEATURES])
    stats = WindowStats(records=len(lengths), short_records=len(short), windows=len(windows),
                        short_record_ids=short, k=k, l=l, stride=stride)
    return windows, stats


def _as_dataset(source, split: str | None) -> tuple[Dataset, str, bool]:
    """The source as one Dataset, words naming it for error messages, and whether it came from .txt files."""
    if isinstance(source, DatasetDict):
        names = list(source)
        if split is None:
            if len(names) == 1:
                split = names[0]
            elif "train" in names:
                split = "train"
            else:
                raise ValueError(f"the DatasetDict has splits {names}; pass split= one of them")
        if split not in source:
            raise ValueError(f"split={split!r} is not in the DatasetDict; allowed: {names}")
        return source[split], f"split {split!r}", False
    if isinstance(source, Dataset):
        return source, "the dataset", False
    if isinstance(source, (str, os.PathLike)):
        paths = [Path(source)]
    elif isinstance(source, (list, tuple)) and source and all(isinstance(p, (str, os.PathLike)) for p in source):
        paths = [Path(p) for p in source]
    else:
        raise TypeError(f"source is a {type(source).__name__}; allowed: a file path (.jsonl, .json, .csv, .parquet, "
                        ".txt), a list of paths of one type, a datasets.Dataset or a datasets.DatasetDict")
    suffixes = {p.suffix.lower() for p in paths}
    for p in paths:
        if p.suffix.lower() not in RECORD_FILE_TYPES:
            raise ValueError(f"{str(p)!r} has suffix {p.suffix!r}; allowed: {', '.join(RECORD_FILE_TYPES)}")
    builders = {RECORD_FILE_TYPES[s] for s in suffixes}
    if len(builders) > 1:
        raise ValueError(f"the files have suffixes {sorted(suffixes)}; allowed: files of one type per call")
    for p in paths:
        if not p.is_file():
            raise ValueError(f"{str(p)!r} does not exist or is not a file; allowed: an existing records file")
        if p.stat().st_size == 0:
            raise ValueError(f"{str(p)!r} is empty; allowed: a file with at least one record")
    where = repr(str(paths[0])) if len(paths) == 1 else f"{len(paths)} {paths[0].suffix.lower()} files"
    builder = builders.pop()
    ds = load_dataset(builder, data_files=[str(p) for p in paths], split="train")
    return ds, where, builder == "text"


def _is_int_list(feature) -> bool:
    inner = getattr(feature, "feature", None)
    return (isinstance(feature, (List, LargeList, Sequence)) and isinstance(inner, Value)
            and inner.dtype.startswith(("int", "uint")))


def _check_unique(record_ids, where: str) -> None:
    seen = set()
    for record_id in record_ids:
        if record_id in seen:
            raise ValueError(f"{where} has record id {record_id!r} more than once; allowed: unique ids (the scan "
                             "reports per record)")
        seen.add(record_id)
