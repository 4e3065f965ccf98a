"""Records in, windows out, and the memorization scan: `hf_memmit.data.records` and `hf_memmit.metrics.scan`."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from _tiny_models import VOCAB, one_thread, tiny_gpt2, tiny_llama
from datasets import Dataset, DatasetDict
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from hf_memmit.data import WindowStats, adds_bos, load_records, make_windows, tokenize_records
from hf_memmit.metrics import (
    ScanResult,
    greedy_match,
    greedy_match_generate,
    pad_id,
    scan_records,
    scan_windows,
)

WORDS = ["<pad>", "<s>", "<unk>", "alice", "bob", "card", "pin", "is", "1", "2", "3", "4", "secret", "x"]
assert len(WORDS) == VOCAB
PLAIN = 3  # ids >= PLAIN are ordinary words


def word_tokenizer(bos_template: bool = False) -> PreTrainedTokenizerFast:
    """A 14-word whitespace tokenizer (ids = model ids); with `bos_template` it adds <s> like Llama's does."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if bos_template:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>")


def text_of(ids) -> str:
    return " ".join(WORDS[i] for i in ids)


def tiny_qwen2(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=2,
                                        max_position_embeddings=64)).eval()


def tiny_neox(seed: int = 0) -> GPTNeoXForCausalLM:
    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                            num_hidden_layers=2, num_attention_heads=2,
                                            max_position_embeddings=64)).eval()


# ---------------------------------------------------------------------------------------------- load_records

TEXTS = ["alice is 1 2", 'bob, "secret" card', "pin is 3 4 x"]


def write_formats(tmp_path, texts, ids=None) -> dict:
    rows = [{"text": t, **({} if ids is None else {"id": i})} for t, i in zip(texts, ids or texts)]
    paths = {s: tmp_path / f"records.{s}" for s in ("jsonl", "json", "csv", "parquet", "txt")}
    paths["jsonl"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    paths["json"].write_text(json.dumps(rows))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    Dataset.from_list(rows).to_parquet(str(paths["parquet"]))
    # .txt: one record per line, empty lines dropped
    paths["txt"].write_text(texts[0] + "\n\n" + "\n".join(texts[1:]) + "\n   \n")
    return paths


def as_pairs(ds) -> list[tuple[str, str]]:
    return list(zip(ds["record_id"], ds["text"]))


def test_load_records_formats_agree(tmp_path):
    paths = write_formats(tmp_path, TEXTS)
    want = [(str(i), t) for i, t in enumerate(TEXTS)]
    for suffix, path in paths.items():
        ds = load_records(path)
        assert ds.column_names == ["record_id", "text"], suffix
        assert as_pairs(ds) == want, suffix
    assert as_pairs(load_records(Dataset.from_dict({"text": TEXTS}))) == want
    dd = DatasetDict({"train": Dataset.from_dict({"text": TEXTS}), "test": Dataset.from_dict({"text": ["x"]})})
    assert as_pairs(load_records(dd)) == want  # default split: "train"
    assert as_pairs(load_records(dd, split="test")) == [("0", "x")]
    assert as_pairs(load_records(DatasetDict({"only": Dataset.from_dict({"text": ["x"]})}))) == [("0", "x")]
    # several files of one type: one set of records, numbered across the files
    two = load_records([paths["jsonl"], paths["jsonl"]])
    assert two["record_id"] == [str(i) for i in range(6)] and two["text"] == TEXTS * 2
    # load_records is idempotent: its own output keeps its record ids
    assert as_pairs(load_records(load_records(paths["csv"]))) == want


def test_load_records_id_and_text_column(tmp_path):
    paths = write_formats(tmp_path, TEXTS, ids=[101, 7, 55])
    for suffix in ("jsonl", "csv", "parquet"):
        assert as_pairs(load_records(paths[suffix])) == [("101", TEXTS[0]), ("7", TEXTS[1]), ("55", TEXTS[2])]
    body = tmp_path / "body.jsonl"
    body.write_text("".join(json.dumps({"id": f"r{i}", "body": t, "other": 1}) + "\n" for i, t in enumerate(TEXTS)))
    ds = load_records(body, text_column="body")
    assert ds.column_names == ["record_id", "text"] and as_pairs(ds) == [(f"r{i}", t) for i, t in enumerate(TEXTS)]


def test_load_records_errors(tmp_path):
    bad = tmp_path / "records.xlsx"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"'\.xlsx'.*allowed: \.jsonl, \.json, \.csv, \.parquet, \.txt"):
        load_records(bad)
    body = tmp_path / "body.jsonl"
    body.write_text(json.dumps({"id": 1, "body": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"no text column 'text'.*columns found: \['id', 'body'\]"):
        load_records(body)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        load_records(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n\n")
    with pytest.raises(ValueError, match="no records"):
        load_records(blank)
    with pytest.raises(ValueError, match="no records"):
        load_records(Dataset.from_dict({"text": []}))
    with pytest.raises(ValueError, match="does not exist"):
        load_records(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="one type"):
        load_records([body, tmp_path / "x.csv"])
    dup = tmp_path / "dup.jsonl"
    dup.write_text("".join(json.dumps({"id": 3, "text": t}) + "\n" for t in TEXTS))
    with pytest.raises(ValueError, match="record id '3' more than once"):
        load_records(dup)
    with pytest.raises(ValueError, match=r"splits \['a', 'b'\]"):
        load_records(DatasetDict({"a": Dataset.from_dict({"text": ["x"]}), "b": Dataset.from_dict({"text": ["y"]})}))
    with pytest.raises(ValueError, match="split='nope'"):
        load_records(DatasetDict({"a": Dataset.from_dict({"text": ["x"]})}), split="nope")
    with pytest.raises(TypeError, match="allowed: a file path"):
        load_records(42)


def test_pretokenized_records_pass_through():
    ds = load_records(Dataset.from_dict({"input_ids": [[3, 4, 5], [6, 7]], "id": ["a", "b"], "extra": [0, 1]}))
    assert ds.column_names == ["record_id", "input_ids"] and ds["record_id"] == ["a", "b"]
    assert tokenize_records(ds, None)["input_ids"] == [[3, 4, 5], [6, 7]]
    with pytest.raises(ValueError, match="integer token ids"):
        load_records(Dataset.from_dict({"input_ids": [["a"], ["b"]]}))


# ------------------------------------------------------------------------------------------- tokenize_records

def test_tokenize_records_bos_rule():
    records = load_records(Dataset.from_dict({"text": ["alice is 1", "secret"]}))
    plain, llama_like = word_tokenizer(), word_tokenizer(bos_template=True)
    assert not adds_bos(plain) and adds_bos(llama_like)
    # a GPT-2-style tokenizer adds nothing by default: nor do we
    assert tokenize_records(records, plain)["input_ids"] == [[3, 7, 8], [12]]
    # a Llama-style tokenizer starts documents with BOS: so does each record, once, at its start
    assert tokenize_records(records, llama_like)["input_ids"] == [[1, 3, 7, 8], [1, 12]]
    assert tokenize_records(records, llama_like, add_special_tokens=False)["input_ids"] == [[3, 7, 8], [12]]
    assert tokenize_records(records, llama_like, add_special_tokens=True)["input_ids"] == [[1, 3, 7, 8], [1, 12]]
    assert tokenize_records(records, plain)["record_id"] == ["0", "1"]
    with pytest.raises(ValueError, match="need a tokenizer"):
        tokenize_records(records, None)


# ------------------------------------------------------------------------------------------------ make_windows

def test_make_windows_counts_and_offsets():
    ids = [i % VOCAB for i in range(100)]
    records = Dataset.from_dict({"record_id": ["long", "short"], "input_ids": [ids, ids[:15]]})
    windows, stats = make_windows(records, k=8, l=8)
    assert windows["offset"] == [0, 16, 32, 48, 64, 80] and windows["window_id"] == list(range(6))
    assert windows.column_names == ["window_id", "record_id", "offset", "prompt_ids", "target_ids", "input_ids"]
    for row in windows:
        o = row["offset"]
        assert row["prompt_ids"] == ids[o:o + 8] and row["target_ids"] == ids[o + 8:o + 16]
        assert row["input_ids"] == row["prompt_ids"] + row["target_ids"] and row["record_id"] == "long"
    assert stats == WindowStats(records=2, short_records=1, windows=6, short_record_ids=["short"], k=8, l=8, stride=16)

    every, stats = make_windows(records, k=8, l=8, stride=1)
    assert len(every) == 85 and every["offset"] == list(range(85)) and stats.windows == 85
    assert make_windows(records, k=8, l=8, stride=30)[0]["offset"] == [0, 30, 60]
    # records without ids are numbered
    assert make_windows(Dataset.from_dict({"input_ids": [ids[:4]]}), k=2, l=2)[0]["record_id"] == ["0"]


def test_make_windows_errors():
    records = Dataset.from_dict({"record_id": ["a", "b"], "input_ids": [[3] * 10, [4] * 12]})
    with pytest.raises(ValueError, match=r"k \+ l = 13.*longest has 12 tokens"):
        make_windows(records, k=8, l=5)
    for kwargs, name in (({"k": 0}, "k=0"), ({"l": -1}, "l=-1"), ({"stride": 0}, "stride=0"), ({"k": 2.0}, "k=2.0")):
        with pytest.raises(ValueError, match=f"{name} is not valid; allowed: an integer >= 1"):
            make_windows(records, **{"k": 2, "l": 2, **kwargs})
    with pytest.raises(ValueError, match="tokenize_records first"):
        make_windows(Dataset.from_dict({"text": ["x"]}), k=1, l=1)


# ---------------------------------------------------------------------------------- ScanResult, by hand

def hand_result(tokenizer=None) -> tuple[ScanResult, dict]:
    """k=2, l=3 windows with set verdicts: record a has adjacent targets [2,5)+[5,8) and a lone [12,15);
    record b overlapping [3,6)+[4,7); record c nothing extractable."""
    rows = [("a", 0, True), ("a", 3, True), ("a", 10, True), ("a", 20, False),
            ("b", 0, False), ("b", 1, True), ("b", 2, True), ("c", 0, False)]
    seq = {r: [PLAIN + (7 * i + j) % (VOCAB - PLAIN) for j in range(30)] for i, r in enumerate("abc")}
    windows = Dataset.from_dict({
        "window_id": list(range(len(rows))), "record_id": [r for r, _, _ in rows], "offset": [o for _, o, _ in rows],
        "prompt_ids": [seq[r][o:o + 2] for r, o, _ in rows], "target_ids": [seq[r][o + 2:o + 5] for r, o, _ in rows],
        "input_ids": [seq[r][o:o + 5] for r, o, _ in rows], "extractable": [e for _, _, e in rows],
        "token_match": [1.0 if e else 1 / 3 for _, _, e in rows],
        "predicted_ids": [seq[r][o + 2:o + 5] if e else [0, 0, 0] for r, o, e in rows]})
    return ScanResult(windows, k=2, l=3, stride=1, tokenizer=tokenizer), seq


def test_records_aggregate_and_merge_spans():
    result, seq = hand_result(word_tokenizer())
    recs = {r["record_id"]: r for r in result.records()}
    assert [r["record_id"] for r in result.records()] == ["a", "b", "c"]
    a, b, c = recs["a"], recs["b"], recs["c"]
    assert (a["windows"], a["extractable_windows"], a["extractable"]) == (4, 3, True)
    assert (a["longest_span_tokens"], a["longest_span_offset"]) == (6, 2)  # [2,5) and [5,8) touch
    assert a["longest_span_text"] == text_of(seq["a"][2:8])
    assert a["token_match"] == pytest.approx((3 + 1 / 3) / 4)
    assert (b["extractable_windows"], b["longest_span_tokens"], b["longest_span_offset"]) == (2, 4, 3)  # overlap
    assert b["longest_span_text"] == text_of(seq["b"][3:7])
    assert (c["extractable"], c["longest_span_tokens"], c["longest_span_offset"], c["longest_span_text"]) == \
        (False, 0, None, None)
    s = result.summary()
    assert (s["records"], s["records_extractable"], s["windows"], s["windows_extractable"]) == (3, 2, 8, 5)
    assert s["records_extractable_fraction"] == pytest.approx(2 / 3) and s["windows_extractable_fraction"] == 5 / 8
    assert (s["k"], s["l"], s["stride"], s["short_records"]) == (2, 3, 1, None)

    top = result.top_records(2)
    assert [t["record_id"] for t in top] == ["a", "b"]
    assert top[0]["best_offset"] == 0 and top[0]["prompt_text"] == text_of(seq["a"][:2])
    assert top[0]["continuation_text"] == text_of(seq["a"][2:5])
    with pytest.raises(ValueError, match="n=0"):
        result.top_records(0)

    forget, retain = result.to_dataset(), result.non_extractable_dataset()
    assert forget["id"] == ["a@0", "a@3", "a@10", "b@1", "b@2"] and retain["id"] == ["a@20", "b@0", "c@0"]
    assert forget["prompt_length"] == [2] * 5 and all(len(x) == 5 for x in forget["input_ids"])
    assert forget.column_names == ["id", "record_id", "offset", "input_ids", "prompt_length"]
    # without a tokenizer the reports carry token ids only
    plain, _ = hand_result()
    assert plain.records()[0]["longest_span_text"] is None and plain.top_records(1)[0]["prompt_text"] is None


# ------------------------------------------------------------------------------ a model that really memorized

K, L, STRIDE, LENGTH = 4, 4, 2, 20


@pytest.fixture(scope="module")
def memorized(tmp_path_factory):
    """A tiny Llama trained until greedy decoding reproduces 4 records (from every window offset the scan
    uses) and one record only from offsets 0, 2 and 10; 4 more records are never seen."""
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(PLAIN, VOCAB, (LENGTH,), generator=g).tolist() for _ in range(9)]
    trained, partial = seqs[:4], seqs[4]
    offsets = range(0, LENGTH - K - L + 1, STRIDE)
    rows = torch.tensor([s[o:o + K + L] for s in trained for o in offsets] + [partial[o:o + K + L]
                                                                             for o in (0, 2, 10)])
    with one_thread():
        model = tiny_llama(0).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        for _ in range(200):
            loss = model(input_ids=rows, labels=rows).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    names = [f"trained-{i}" for i in range(4)] + ["partial"] + [f"unseen-{i}" for i in range(4)]
    path = tmp_path_factory.mktemp("records") / "records.jsonl"
    path.write_text("".join(json.dumps({"id": n, "text": text_of(s)}) + "\n" for n, s in zip(names, seqs)))
    return model, path, dict(zip(names, seqs))


def covered_runs(offsets) -> int:
    """Longest run of consecutive token positions covered by the targets at these window offsets."""
    covered = {o + K + j for o in offsets for j in range(L)}
    best = run = 0
    for p in range(LENGTH + 1):
        run = run + 1 if p in covered else 0
        best = max(best, run)
    return best


def test_scan_finds_the_memorized_records(memorized):
    model, path, seqs = memorized
    tok = word_tokenizer()
    with one_thread():
        result = scan_records(model, tok, path, k=K, l=L, stride=STRIDE, progress=False)
    n_win = len(range(0, LENGTH - K - L + 1, STRIDE))
    assert len(result.windows) == 9 * n_win
    recs = {r["record_id"]: r for r in result.records()}
    for i in range(4):
        r = recs[f"trained-{i}"]
        assert (r["extractable"], r["extractable_windows"], r["windows"]) == (True, n_win, n_win)
        assert r["token_match"] == 1.0
        # every target span touches the next: the whole record after the first prompt is regurgitated
        assert (r["longest_span_tokens"], r["longest_span_offset"]) == (LENGTH - K, K)
        assert r["longest_span_text"] == text_of(seqs[f"trained-{i}"][K:])
        r = recs[f"unseen-{i}"]
        assert (r["extractable"], r["extractable_windows"], r["longest_span_tokens"]) == (False, 0, 0)
        assert r["token_match"] < 1.0
    part = recs["partial"]
    hits = [row["offset"] for row in result.windows if row["record_id"] == "partial" and row["extractable"]]
    assert {0, 2} <= set(hits) and part["extractable_windows"] == len(hits) < n_win
    assert part["longest_span_tokens"] == covered_runs(hits)

    s = result.summary()
    assert (s["records"], s["records_extractable"], s["windows"]) == (9, 5, 9 * n_win)
    assert (s["k"], s["l"], s["stride"], s["short_records"]) == (K, L, STRIDE, 0)
    assert [t["record_id"] for t in result.top_records(4)] == [f"trained-{i}" for i in range(4)]
    best = result.top_records(1)[0]
    assert best["continuation_text"] == text_of(seqs["trained-0"][K:K + L])

    forget = result.to_dataset()
    ext = result.windows.filter(lambda r: r["extractable"])
    assert len(forget) == sum(result.windows["extractable"]) == 4 * n_win + len(hits)
    assert forget["id"] == [f"{r}@{o}" for r, o in zip(ext["record_id"], ext["offset"])]
    assert forget["input_ids"] == [p + t for p, t in zip(ext["prompt_ids"], ext["target_ids"])]
    assert set(forget["prompt_length"]) == {K}
    assert len(result.non_extractable_dataset()) == len(result.windows) - len(forget)

    # the teacher-forced scan agrees row for row with greedy `generate`
    with one_thread():
        gen = greedy_match_generate(model, result.windows["prompt_ids"], result.windows["target_ids"])
    assert gen.exact.tolist() == result.windows["extractable"]
    ext_pred = [p for p, e in zip(result.windows["predicted_ids"], result.windows["extractable"]) if e]
    assert ext_pred == [p for p, e in zip(gen.predictions, gen.exact.tolist()) if e]


def test_save_load_round_trip(memorized, tmp_path):
    model, path, _ = memorized
    tok = word_tokenizer()
    with one_thread():
        result = scan_records(model, tok, path, k=K, l=L, stride=STRIDE, progress=False)
    out = result.save(tmp_path / "scan")
    assert sorted(p.name for p in out.iterdir()) == ["records.jsonl", "summary.json", "summary.md", "windows.jsonl"]
    lines = (out / "records.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.records()
    summary = json.loads((out / "summary.json").read_text())
    assert {k: summary[k] for k in result.summary()} == result.summary() and summary["short_record_ids"] == []
    md = (out / "summary.md").read_text()
    assert "| records_extractable | 5 |" in md and "| trained-0 |" in md

    loaded = ScanResult.load(out)
    assert loaded.to_dataset().to_list() == result.to_dataset().to_list()
    assert loaded.non_extractable_dataset().to_list() == result.non_extractable_dataset().to_list()
    assert loaded.windows.to_list() == result.windows.to_list()
    assert loaded.windows.features == result.windows.features
    assert loaded.summary() == result.summary() and loaded.stats == result.stats
    assert ScanResult.load(out, tokenizer=tok).records() == result.records()
    with pytest.raises(ValueError, match="not a saved scan"):
        ScanResult.load(tmp_path / "nothing")


# ------------------------------------------------------------------------------------- any causal LM

@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama, tiny_qwen2, tiny_neox],
                         ids=["gpt2", "llama", "qwen2", "gpt_neox"])
def test_scan_mechanics_on_architectures(make):
    """Targets are the model's own greedy continuation (extractable by construction) or that continuation
    with the last token changed (not extractable); the scan must tell them apart as `generate` does."""
    k, l, n = 6, 5, 8
    model = make(0)
    g = torch.Generator().manual_seed(3)
    prompts = torch.randint(0, VOCAB, (n, k), generator=g).tolist()
    with one_thread():
        greedy = greedy_match_generate(model, prompts, [[0] * l] * n).predictions
    targets = [c if i % 2 == 0 else c[:-1] + [(c[-1] + 1) % VOCAB] for i, c in enumerate(greedy)]
    records = Dataset.from_dict({"id": [f"r{i}" for i in range(n)], "input_ids": [p + t for p, t in zip(prompts, targets)]})
    with one_thread():
        result = scan_records(model, None, records, k=k, l=l, batch_size=3, progress=False)
        gen = greedy_match_generate(model, result.windows["prompt_ids"], result.windows["target_ids"])
    assert len(result.windows) == n and result.windows["record_id"] == [f"r{i}" for i in range(n)]
    assert result.windows["extractable"] == [i % 2 == 0 for i in range(n)] == gen.exact.tolist()
    assert all(len(p) == l for p in result.windows["predicted_ids"])
    for i, (tm, pred) in enumerate(zip(result.windows["token_match"], result.windows["predicted_ids"])):
        # teacher-forced, only the changed last token can miss
        assert tm == (1.0 if i % 2 == 0 else (l - 1) / l) and pred == greedy[i]
    assert len(result.to_dataset()) == n // 2 and result.summary()["records_extractable"] == n // 2


def test_token_outside_vocabulary():
    model = tiny_gpt2(0)
    records = Dataset.from_dict({"input_ids": [[3, 4, 5, VOCAB, 6, 7]]})
    with pytest.raises(ValueError, match=f"token id {VOCAB} is outside the model's vocabulary"):
        scan_records(model, None, records, k=3, l=3, progress=False)


def test_scan_windows_checks_and_pad_id():
    model = tiny_gpt2(0)
    windows = Dataset.from_dict({"record_id": ["a", "b"], "offset": [0, 0], "prompt_ids": [[3, 4], [3, 4, 5]],
                                 "target_ids": [[5], [6]]})
    with pytest.raises(ValueError, match=r"prompt lengths \[2, 3\]"):
        scan_windows(model, windows, progress=False)
    with pytest.raises(ValueError, match=r"lack columns \['offset'\]"):
        scan_windows(model, windows.remove_columns("offset"), progress=False)
    # windows without window_id / input_ids get them; a rescan replaces the verdict columns
    first = scan_windows(model, windows.select([0]), progress=False)
    assert first.windows["input_ids"] == [[3, 4, 5]] and first.windows["window_id"] == [0]
    again = scan_windows(model, first.windows, progress=False)
    assert again.windows.to_list() == first.windows.to_list()

    tok = word_tokenizer()
    assert pad_id(model, tok) == 0 and pad_id(model, None) == 0
    tok.add_special_tokens({"pad_token": "<newpad>", "eos_token": "x"})  # pad beyond the model's embedding
    assert tok.pad_token_id == VOCAB and pad_id(model, tok) == WORDS.index("x")


def test_scan_reads_windows_a_shard_at_a_time(monkeypatch):
    """Memory: the windows reach `greedy_match` one shard at a time and `input_ids` is joined in Arrow batches;
    the result equals one `greedy_match` over all windows. A bad token id in the last window is refused before
    any window is checked."""
    import hf_memmit.metrics.scan as scan_module
    import hf_memmit.metrics.shards as shards_module

    model = tiny_gpt2(0)
    g = torch.Generator().manual_seed(5)
    rows = torch.randint(0, VOCAB, (11, 7), generator=g).tolist()
    windows = Dataset.from_dict({"record_id": [f"r{i}" for i in range(11)], "offset": [0] * 11,
                                 "prompt_ids": [r[:4] for r in rows], "target_ids": [r[4:] for r in rows]})
    seen = []
    real = shards_module.greedy_match
    monkeypatch.setattr(shards_module, "greedy_match", lambda m, p, t, **kw: seen.append(len(p)) or real(m, p, t, **kw))
    monkeypatch.setattr(scan_module, "_ARROW_BATCH", 3)
    with one_thread():
        result = scan_windows(model, windows.select(range(10, -1, -1)), batch_size=2, shard_size=4, progress=False)
        whole = greedy_match(model, [r[:4] for r in rows[::-1]], [r[4:] for r in rows[::-1]], batch_size=2)
    assert seen == [4, 4, 3]
    assert result.windows["input_ids"] == rows[::-1] and result.windows["window_id"] == list(range(11))
    assert result.windows["extractable"] == whole.exact.tolist()
    assert result.windows["predicted_ids"] == whole.predictions
    seen.clear()
    bad = windows.map(lambda r, i: {"target_ids": r["target_ids"][:-1] + [VOCAB]} if i == 10 else {},
                      with_indices=True)
    with pytest.raises(ValueError, match=f"token id {VOCAB} is outside"):
        scan_windows(model, bad, batch_size=2, shard_size=4, progress=False)
    assert seen == []
