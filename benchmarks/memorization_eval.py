"""Memorization check: the batched teacher-forced pass against two `generate` baselines, same model, same rows,
one run. Answers are compared row by row; speed-ups are wall-clock ratios.

    python benchmarks/memorization_eval.py --model RUN_DIR        # a finished TinyMem run (hf-memmit train)
    python benchmarks/memorization_eval.py                        # trains a tiny-profile math+noise model first
    python benchmarks/memorization_eval.py --model RUN_DIR --rows 64   # smoke run

Methods, all on the same (prompt, target) pairs (k = 50, l = 50; noise rows prompt with the clean prefix):
- teacher-forced: `hf_memmit.metrics.greedy_match`, one forward pass per batch (float32);
- reference: the reference's exact call, `generate(prompt, max_length=150, min_length=150, pad_token_id=pad)`,
  batch 32, no KV cache (its model config has `use_cache=False`), no attention mask; 100 tokens generated,
  the first 50 compared. `min_length` bans EOS, so rows whose target window holds EOS cannot match there;
- generate: the strongest plain `generate` (`greedy_match_generate`): greedy, 50 new tokens, KV cache,
  batch 32, left padding with an attention mask, EOS not stopping.
Writes benchmarks/results/memorization_eval{,_gpu}.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results

from hf_memmit.metrics import artifact_pairs, greedy_match, greedy_match_generate, match_tokens

K = L = 50
FLOORS = {"reference": 20.0, "generate": 3.0}  # required speed-up of teacher-forced over each (2 CPU cores)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - start


@torch.no_grad()
def reference_check(model, prompts, targets, batch_size: int, pad_token_id: int):
    """The reference's measurement loop: equal-length prompts, no attention mask, no KV cache, EOS banned."""
    model.eval()
    device = next(model.parameters()).device
    preds = []
    for s in range(0, len(prompts), batch_size):
        ids = torch.tensor(prompts[s:s + batch_size], device=device)
        out = model.generate(ids, max_length=150, min_length=150, pad_token_id=pad_token_id, use_cache=False)
        preds += out[:, ids.shape[1]:].tolist()
    return match_tokens(preds, targets)  # compares the first 50 generated tokens with the target


def load_rows(run_dir, n: int, n_layer: int):
    from hf_memmit.tinymem import load_run

    if run_dir is None:
        from hf_memmit.data import TinyMemDataConfig
        from hf_memmit.tinymem import TrainConfig, train_tinymem

        run_dir = Path(tempfile.mkdtemp(prefix="memorization_eval_")) / "run"
        print(f"no --model: training a tiny-profile math+noise model ({n_layer} layers) in {run_dir}")
        train_tinymem(run_dir, TinyMemDataConfig(task="math", artifact="noise", profile="tiny"),
                      TrainConfig(n_layer=n_layer), progress_bar=False)
    model, dataset = load_run(run_dir)
    # forget first: the noise rows are the ones a memorizing model reproduces
    pool = [dict(r) for split in ("forget", "test", "retain") if split in dataset for r in dataset[split]]
    if n > len(pool):
        raise SystemExit(f"--rows {n} is more than the {len(pool)} forget+test+retain rows of {run_dir}")
    return model, pool[:n], str(run_dir)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=None, help="a finished TinyMem run dir (default: train one)")
    p.add_argument("--rows", type=int, default=1000)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None,
                   help="rows per teacher-forced pass (default 32 on CPU, where the activations of a 32-row batch "
                        "stay in cache and run faster per row than 128 or 256; 256 on CUDA)")
    p.add_argument("--baseline-batch-size", type=int, default=32, help="the reference's generate batch")
    p.add_argument("--repeats", type=int, default=5, help="teacher-forced timing repeats (median)")
    p.add_argument("--n-layer", type=int, default=4, help="layers of the model trained when no --model is given")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    model, rows, run_dir = load_rows(args.model, args.rows, args.n_layer)
    model = model.to(device).eval()
    pairs = [artifact_pairs(r, L, K) for r in rows]
    prompts, targets = [pr for pr, *_ in pairs], [t for _, t, *_ in pairs]
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else model.config.eos_token_id
    eos = model.config.eos_token_id
    bs, bbs = args.batch_size or (256 if device.type == "cuda" else 32), args.baseline_batch_size

    # warm-up (allocator, kernels) on one small batch each, untimed
    greedy_match(model, prompts[:4], targets[:4], batch_size=bs)
    greedy_match_generate(model, prompts[:2], targets[:2], batch_size=bbs, pad_token_id=pad)
    reference_check(model, prompts[:2], targets[:2], bbs, pad)

    tf_times, tf = [], None
    for _ in range(args.repeats):
        tf, sec = timed(lambda: greedy_match(model, prompts, targets, batch_size=bs), device)
        tf_times.append(sec)
    gen, gen_sec = timed(lambda: greedy_match_generate(model, prompts, targets, batch_size=bbs, pad_token_id=pad),
                         device)
    ref, ref_sec = timed(lambda: reference_check(model, prompts, targets, bbs, pad), device)
    bf16 = greedy_match(copy.deepcopy(model).to(torch.bfloat16), prompts, targets, batch_size=bs, fp32=False)
    tf_sec = statistics.median(tf_times)

    flags = tf.exact.tolist()
    has_eos = [eos in t for t in targets]
    ids = [r["id"] + ":" + r["artifact"] for r in rows]

    def compare(other):
        diff = [i for i, (a, b) in enumerate(zip(flags, other.exact.tolist())) if a != b]
        return {"mismatches": len(diff), "mismatch_rows": [ids[i] for i in diff],
                "mismatches_with_eos_in_target": sum(has_eos[i] for i in diff)}

    methods = {"teacher_forced": (tf, tf_sec), "generate": (gen, gen_sec), "reference": (ref, ref_sec)}
    table, result_methods = [], {}
    for name, (match, sec) in methods.items():
        entry = {"seconds": sec, "rows_per_s": len(rows) / sec, "memorized": int(match.exact.sum()),
                 "speedup_of_teacher_forced": sec / tf_sec, **compare(match)}
        if name in FLOORS:
            entry["floor"] = FLOORS[name]
            entry["meets_floor"] = entry["speedup_of_teacher_forced"] >= FLOORS[name]
        result_methods[name] = entry
        table.append({"method": name, **{k: entry[k] for k in ("seconds", "rows_per_s", "memorized",
                                                              "speedup_of_teacher_forced", "mismatches",
                                                              "mismatches_with_eos_in_target")}})
    bf16_changed = sum(a != b for a, b in zip(flags, bf16.exact.tolist()))
    n_eos = sum(has_eos)
    result = {
        "benchmark": "memorization_eval", "device": str(device), "model": run_dir, "rows": len(rows),
        "n_layer": model.config.n_layer if hasattr(model.config, "n_layer") else None,
        "k": K, "l": L, "batch_size": bs, "baseline_batch_size": bbs, "repeats": args.repeats,
        "teacher_forced_seconds_each": tf_times, "rows_by_artifact": {a: sum(r["artifact"] == a for r in rows)
                                                                     for a in sorted({r["artifact"] for r in rows})},
        "noise_rows_qualifying": sum(q for r, (*_, q) in zip(rows, pairs) if r["artifact"] == "noise"),
        "rows_with_eos_in_target": n_eos, "methods": result_methods,
        "bf16_teacher_forced_rows_changed": bf16_changed, "environment": environment(),
    }
    ref_note = result_methods["reference"]
    md = (f"## Memorization check ({device}, {len(rows)} rows, k={K}, l={L}, model {run_dir})\n\n"
          f"{md_table(table, [c for c in table[0]])}\n\n"
          f"- teacher-forced: median of {args.repeats} runs, batch {bs}, float32; baselines batch {bbs}, one run.\n"
          f"- speed-up floors: >= {FLOORS['reference']:g}x over the reference call "
          f"({'met' if ref_note['meets_floor'] else 'NOT met'}), >= {FLOORS['generate']:g}x over plain generate "
          f"({'met' if result_methods['generate']['meets_floor'] else 'NOT met'}).\n"
          f"- {n_eos} rows hold EOS in their 50-token target; the reference call bans EOS (min_length), so it "
          f"cannot reproduce those: {ref_note['mismatches_with_eos_in_target']} of its "
          f"{ref_note['mismatches']} disagreements are such rows.\n"
          f"- a bf16 teacher-forced pass (fp32=False) changes {bf16_changed} of {len(rows)} answers.\n")
    write_results("memorization_eval" + ("_gpu" if device.type == "cuda" else ""), result, md, args.out)
    return result


if __name__ == "__main__":
    main()
