"""Scan any causal LM for the records it regurgitates.

A window (a k-token prompt from a record and the l tokens after it) is extractable when greedy decoding from
the prompt reproduces the target exactly (Carlini et al., 2021/2023). `scan_records` loads, tokenizes and
windows a user's records (`hf_memmit.data.records`) and checks every window with `greedy_match`, the one
memorization check of this library; `ScanResult` reports per window and per record, and hands the
extractable windows on as a forget set for `hf_memmit.unlearn`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, Features, List, Value, concatenate_datasets
from datasets.fingerprint import generate_random_fingerprint
from datasets.table import InMemoryTable

from ..data.records import WindowStats, load_records, make_windows, tokenize_records
from ..utils import atomic_open, atomic_write_bytes, atomic_write_json, library_versions
from .greedy import _vocab_size, check_vocab
from .shards import SCAN_FEATURES, sharded_greedy_match

_WINDOW_TYPES = {"window_id": Value("int64"), "record_id": Value("string"), "offset": Value("int64"),
                 "prompt_ids": List(Value("int64")), "target_ids": List(Value("int64")),
                 "input_ids": List(Value("int64")), **SCAN_FEATURES}
_REQUIRED = ("record_id", "offset", "prompt_ids", "target_ids")
SET_FEATURES = Features({"id": Value("string"), "record_id": Value("string"), "offset": Value("int64"),
                         "input_ids": List(Value("int64")), "prompt_length": Value("int32")})
TOP_IN_MARKDOWN = 20


@dataclass
class ScanResult:
    """The windows of a scan with their verdicts, and per-record reports built from them.

    `windows` has the columns of `make_windows` plus `extractable` (greedy decoding reproduces the target),
    `token_match` (teacher-forced fraction of target tokens predicted right, the "exact memorization" score
    of unlearning benchmarks) and `predicted_ids` (the argmax at each target position given the true tokens
    before it: for an extractable window exactly what greedy decoding produces). `k`, `l`, `stride` are the
    window sizes; `stats` says how the records were cut (None when the scan started from windows).
    """

    windows: Dataset
    k: int
    l: int
    stride: int | None = None
    stats: WindowStats | None = None
    tokenizer: Any = field(default=None, repr=False, compare=False)

    def _columns(self, *names: str) -> dict[str, list]:
        return self.windows.select_columns(list(names))[:]

    def _decode(self, ids) -> str | None:
        return None if self.tokenizer is None else self.tokenizer.decode(list(ids))

    def records(self) -> list[dict]:
        """One dict per scanned record, in input order: `record_id`, `windows`, `extractable_windows`,
        `extractable` (any window extractable), `token_match` (mean over its windows), and the longest
        extractable span: the extractable windows' target spans [offset + k, offset + k + l) merged where
        they touch or overlap, as `longest_span_tokens`, `longest_span_offset` and `longest_span_text`
        (decoded when a tokenizer is known, else None)."""
        cols = self._columns("record_id", "offset", "extractable", "token_match", "target_ids")
        groups: dict[str, list[int]] = {}
        for i, record_id in enumerate(cols["record_id"]):
            groups.setdefault(record_id, []).append(i)
        out = []
        for record_id, rows in groups.items():
            hits = [i for i in rows if cols["extractable"][i]]
            start, tokens = _longest_span([(cols["offset"][i] + self.k, cols["target_ids"][i]) for i in hits])
            out.append({"record_id": record_id, "windows": len(rows), "extractable_windows": len(hits),
                        "extractable": bool(hits),
                        "token_match": sum(cols["token_match"][i] for i in rows) / len(rows),
                        "longest_span_tokens": len(tokens), "longest_span_offset": start,
                        "longest_span_text": self._decode(tokens) if tokens else None})
        return out

    def summary(self) -> dict:
        """Counts and fractions. `records` counts the scanned records (those with at least one window);
        `short_records` (too short for one window, so not scanned) is None when unknown. `mean_token_match`
        is the mean over windows."""
        records = self.records()
        cols = self._columns("extractable", "token_match")
        n_rec, n_win = len(records), len(self.windows)
        rec_hit, win_hit = sum(r["extractable"] for r in records), sum(cols["extractable"])
        return {"records": n_rec, "records_extractable": rec_hit,
                "records_extractable_fraction": rec_hit / n_rec if n_rec else 0.0,
                "windows": n_win, "windows_extractable": win_hit,
                "windows_extractable_fraction": win_hit / n_win if n_win else 0.0,
                "mean_token_match": sum(cols["token_match"]) / n_win if n_win else 0.0,
                "k": self.k, "l": self.l, "stride": self.stride,
                "short_records": None if self.stats is None else self.stats.short_records}

    def window_ids(self) -> list[str]:
        """Each window's id, "record_id@offset", in window order (the `id` of the forget and retain sets)."""
        cols = self._columns("record_id", "offset")
        return [f"{r}@{o}" for r, o in zip(cols["record_id"], cols["offset"])]

    def _subset(self, extractable: bool) -> Dataset:
        cols = self._columns("record_id", "offset", "input_ids", "extractable")
        keep = [i for i, e in enumerate(cols["extractable"]) if bool(e) == extractable]
        ids = self.window_ids()
        return Dataset.from_dict({
            "id": [ids[i] for i in keep],
            "record_id": [cols["record_id"][i] for i in keep],
            "offset": [cols["offset"][i] for i in keep],
            "input_ids": [cols["input_ids"][i] for i in keep],
            "prompt_length": [self.k] * len(keep),
        }, features=SET_FEATURES)

    def to_dataset(self) -> Dataset:
        """The extractable windows as a forget set for `hf_memmit.unlearn(model, config, forget, retain)`:
        `input_ids` (k + l tokens), `id` ("record_id@offset"), `record_id`, `offset`, `prompt_length` (= k,
        so unlearning's stopping check uses the same (k, l) split). Empty when nothing is extractable."""
        return self._subset(True)

    def non_extractable_dataset(self) -> Dataset:
        """The windows that are not extractable, in the same format: a sensible default retain set (same
        records and distribution, disjoint ids from `to_dataset()`)."""
        return self._subset(False)

    def top_records(self, n: int = 10) -> list[dict]:
        """The `n` most memorized records: by extractable windows, then longest span, then mean token match.
        Each is a `records()` dict plus its best window (extractable first, then token match): `best_offset`,
        `prompt_ids`, `continuation_ids` (the predicted tokens) and, with a tokenizer, `prompt_text` and
        `continuation_text`. For an extractable window the continuation is what the model regurgitates; for
        another it is the per-token teacher-forced guesses."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n={n!r} is not valid; allowed: an integer >= 1")
        ranked = sorted(self.records(), key=lambda r: (-r["extractable_windows"], -r["longest_span_tokens"],
                                                       -r["token_match"]))[:n]
        cols = self._columns("record_id", "offset", "extractable", "token_match", "prompt_ids", "predicted_ids")
        best: dict[str, int] = {}
        for i, record_id in enumerate(cols["record_id"]):
            j = best.get(record_id)
            if j is None or (cols["extractable"][i], cols["token_match"][i]) > (cols["extractable"][j],
                                                                                 cols["token_match"][j]):
                best[record_id] = i
        out = []
        for record in ranked:
            i = best[record["record_id"]]
            out.append({**record, "best_offset": cols["offset"][i], "prompt_ids": cols["prompt_ids"][i],
                        "continuation_ids": cols["predicted_ids"][i],
                        "prompt_text": self._decode(cols["prompt_ids"][i]),
                        "continuation_text": self._decode(cols["predicted_ids"][i])})
        return out

    def save(self, out_dir) -> Path:
        """Write `records.jsonl` (one JSON per record), `windows.jsonl` (one per window, with verdicts),
        `summary.json` (the summary, short record ids, library versions) and `summary.md` (a Markdown table of
        the summary and the top records); each file atomically, all JSON so `load` never unpickles."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out / "records.jsonl", _jsonl(self.records()))
        with atomic_open(out / "windows.jsonl") as f:  # a batch of windows at a time: the scan may be large
            for batch in self.windows.with_format(None).iter(batch_size=1024):
                f.write(_jsonl(dict(zip(batch, row)) for row in zip(*batch.values())))
        summary = self.summary()
        atomic_write_json(out / "summary.json", {
            **summary, "short_record_ids": None if self.stats is None else self.stats.short_record_ids,
            "versions": library_versions()})
        atomic_write_bytes(out / "summary.md", _markdown(summary, self.top_records(TOP_IN_MARKDOWN)).encode())
        return out

    @classmethod
    def load(cls, out_dir, *, tokenizer=None) -> ScanResult:
        """Read a scan written by `save` (JSON only); `to_dataset()` then works as on the original."""
        out = Path(out_dir)
        missing = [name for name in ("windows.jsonl", "summary.json") if not (out / name).is_file()]
        if missing:
            raise ValueError(f"{str(out)!r} is not a saved scan: {', '.join(missing)} missing; allowed: a folder "
                             "written by ScanResult.save")
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        lines = (out / "windows.jsonl").read_text(encoding="utf-8").splitlines()
        windows = Dataset.from_list([json.loads(line) for line in lines if line.strip()])
        windows = windows.cast(Features({name: _WINDOW_TYPES.get(name, feature)
                                         for name, feature in windows.features.items()}))
        stats = None
        if summary.get("short_records") is not None:
            stats = WindowStats(records=summary["records"] + summary["short_records"],
                                short_records=summary["short_records"], windows=len(windows),
                                short_record_ids=list(summary.get("short_record_ids") or []), k=summary["k"],
                                l=summary["l"], stride=summary["stride"])
        return cls(windows, k=summary["k"], l=summary["l"], stride=summary["stride"], stats=stats,
                   tokenizer=tokenizer)


def scan_windows(model, windows: Dataset, *, tokenizer=None, batch_size: int = 32, fp32: bool = True,
                 progress: bool = True, state=None, shard_dir=None, shard_size: int | None = None) -> ScanResult:
    """Check every window with `greedy_match` (one teacher-forced pass per batch, same verdict as greedy
    `generate`) and return a `ScanResult`.

    The windows are checked in shards (`sharded_greedy_match`): under `accelerate launch` (or with `state=` an
    `Accelerator` / `PartialState`) the processes share them and every process gets the whole result; with
    `shard_dir` finished shards are kept there and a killed scan resumes.

    `windows`: a Dataset as `make_windows` makes it (`record_id`, `offset`, `prompt_ids`, `target_ids`; all
    prompts of one length k, all targets of one length l). Token ids outside the model's vocabulary raise
    ValueError (a tokenizer/model mismatch). Padding uses the tokenizer's pad id, else its EOS id, else 0
    (padding is masked, so any id inside the vocabulary gives the same verdicts). `tokenizer` is also kept
    to decode texts in the reports.
    """
    if not isinstance(windows, Dataset):
        raise TypeError(f"windows is a {type(windows).__name__}; allowed: a datasets.Dataset from make_windows")
    missing = [c for c in _REQUIRED if c not in windows.column_names]
    if missing:
        raise ValueError(f"windows lack columns {missing}; columns found: {windows.column_names}; allowed: the "
                         "output of make_windows")
    if len(windows) == 0:
        raise ValueError("no windows to scan; allowed: at least one window")
    windows = windows.remove_columns([c for c in SCAN_FEATURES if c in windows.column_names]).with_format(None)
    k, l = _window_sizes(model, windows)
    if "window_id" not in windows.column_names:
        windows = windows.add_column("window_id", np.arange(len(windows), dtype=np.int64), feature=Value("int64"))
    if "input_ids" not in windows.column_names:
        windows = concatenate_datasets([windows, _joined_ids(windows, k, l)], axis=1)
    verdicts = sharded_greedy_match(model, windows["prompt_ids"], windows["target_ids"], batch_size=batch_size,
                                    pad_token_id=pad_id(model, tokenizer), fp32=fp32, shard_size=shard_size,
                                    state=state, shard_dir=shard_dir, progress=progress)
    windows = concatenate_datasets([windows, verdicts], axis=1)
    return ScanResult(windows, k=k, l=l, tokenizer=tokenizer)


_ARROW_BATCH = 8192  # windows per Arrow batch when a whole column is read (a few MB at a time)


def _token_batches(windows: Dataset):
    """The windows' prompt and target ids as Arrow list arrays, a batch of windows at a time."""
    table = windows.select_columns(["prompt_ids", "target_ids"]).with_format("arrow")
    for batch in table.iter(batch_size=_ARROW_BATCH):
        yield batch.column("prompt_ids"), batch.column("target_ids")


def _window_sizes(model, windows: Dataset) -> tuple[int, int]:
    """k and l, checked to be one prompt and one target length for all windows, and every token id checked
    against the model's vocabulary before any window is scanned (read in Arrow batches, never whole)."""
    ks, ls, low, top = set(), set(), None, None
    for prompts, targets in _token_batches(windows):
        ks.update(pc.unique(pc.list_value_length(prompts)).to_pylist())
        ls.update(pc.unique(pc.list_value_length(targets)).to_pylist())
        for ids in (pc.list_flatten(prompts), pc.list_flatten(targets)):
            if len(ids):
                bounds = pc.min_max(ids).as_py()
                low = bounds["min"] if low is None else min(low, bounds["min"])
                top = bounds["max"] if top is None else max(top, bounds["max"])
    if len(ks) != 1 or len(ls) != 1 or 0 in ks | ls:
        raise ValueError(f"windows have prompt lengths {sorted(ks)[:5]} and target lengths {sorted(ls)[:5]}; "
                         "allowed: one k >= 1 and one l >= 1 for all windows (as make_windows cuts them)")
    check_vocab(model, [[low, top]])
    return ks.pop(), ls.pop()


def _joined_ids(windows: Dataset, k: int, l: int) -> Dataset:
    """Each window's prompt followed by its target (the `input_ids` column), joined in Arrow."""
    chunks = []
    for prompts, targets in _token_batches(windows):
        n = len(prompts)
        ids = np.hstack([pc.list_flatten(prompts).to_numpy().reshape(n, k),
                         pc.list_flatten(targets).to_numpy().reshape(n, l)])
        offsets = pa.array(np.arange(0, n * (k + l) + 1, k + l, dtype=np.int32))
        chunks.append(pa.ListArray.from_arrays(offsets, pa.array(ids.reshape(-1), type=pa.int64())))
    table = pa.table({"input_ids": pa.chunked_array(chunks, type=pa.list_(pa.int64()))})
    return Dataset(InMemoryTable(table), fingerprint=generate_random_fingerprint())  # no hashing pass over it


def scan_records(model, tokenizer, records, *, k: int = 32, l: int = 32, stride: int | None = None,
                 add_special_tokens: bool | None = None, batch_size: int = 32, fp32: bool = True,
                 progress: bool = True, state=None, shard_dir=None) -> ScanResult:
    """Which records does the model regurgitate? Load (`load_records`: a file, list of files, Dataset or
    DatasetDict), tokenize with the model's own tokenizer (`tokenize_records`: BOS as in training by
    default), cut into (k, l) windows (`make_windows`: non-overlapping by default, `stride=1` for every
    offset) and check each window (`scan_windows`, which also explains `state` and `shard_dir`). `tokenizer` may
    be None for pre-tokenized records."""
    records = load_records(records)
    tokenized = tokenize_records(records, tokenizer, add_special_tokens=add_special_tokens)
    windows, stats = make_windows(tokenized, k=k, l=l, stride=stride)
    result = scan_windows(model, windows, tokenizer=tokenizer, batch_size=batch_size, fp32=fp32,
                          progress=progress, state=state, shard_dir=shard_dir)
    result.stride, result.stats = stats.stride, stats
    return result


def pad_id(model, tokenizer=None) -> int:
    """The id that fills padded positions: the tokenizer's pad id, else its EOS id, else 0; the first that
    indexes the model's embedding (a pad token added to a tokenizer without resizing the model does not)."""
    vocab = _vocab_size(model)
    candidates = [getattr(tokenizer, "pad_token_id", None), getattr(tokenizer, "eos_token_id", None), 0]
    for candidate in candidates:
        if isinstance(candidate, int) and candidate >= 0 and (vocab is None or candidate < vocab):
            return candidate
    return 0


def _longest_span(spans: list[tuple[int, list[int]]]) -> tuple[int | None, list[int]]:
    """Merge [start, start + len(tokens)) spans that touch or overlap; the first longest one's start and
    tokens ((None, []) without spans)."""
    token_at = {start + j: t for start, tokens in spans for j, t in enumerate(tokens)}
    best_start, best_end = None, None
    cur_start = cur_end = None
    for start, end in sorted((s, s + len(t)) for s, t in spans) + [(None, None)]:
        if start is not None and cur_end is not None and start <= cur_end:
            cur_end = max(cur_end, end)
            continue
        if cur_start is not None and (best_start is None or cur_end - cur_start > best_end - best_start):
            best_start, best_end = cur_start, cur_end
        cur_start, cur_end = start, end
    if best_start is None:
        return None, []
    return best_start, [token_at[p] for p in range(best_start, best_end)]


def _jsonl(rows) -> bytes:
    return "".join(json.dumps(dict(row), ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


def _md(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    text = " ".join(str(value).split())
    text = text if len(text) <= 120 else text[:117] + "..."
    return text.replace("|", "\\|")


def _text_or_ids(record: dict, what: str):
    text = record[f"{what}_text"]
    return record[f"{what}_ids"] if text is None else text


def _markdown(summary: dict, top: list[dict]) -> str:
    lines = ["# Memorization scan", "",
             "A window is extractable when greedy decoding from its k-token prompt reproduces the next l tokens.",
             "", "| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_md(value)} |" for key, value in summary.items()]
    lines += ["", f"## Top records (up to {TOP_IN_MARKDOWN})", "",
              ("| record_id | extractable windows | windows | longest span (tokens) | mean token match | "
               "best offset | prompt | continuation |"), "|---|---|---|---|---|---|---|---|"]
    for r in top:
        lines.append(f"| {_md(r['record_id'])} | {r['extractable_windows']} | {r['windows']} "
                     f"| {r['longest_span_tokens']} | {_md(r['token_match'])} | {r['best_offset']} | {_md(_text_or_ids(r, 'prompt'))} "
                     f"| {_md(_text_or_ids(r, 'continuation'))} |")
    return "\n".join(lines) + "\n"
