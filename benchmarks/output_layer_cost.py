"""How much of an unlearning step on a large-vocabulary model is the output layer's arithmetic alone?

One BalancedSubnet step on the quick language+noise TinyMem model scores 64 rows x 150 tokens against a
50,257-token vocabulary. This times, on the same shapes (9,600 positions x 128 hidden x 50,257), in one run:

- the library's per-row loss and its gradient w.r.t. the hidden states (`row_losses` on a tiny 0-layer GPT-2 of
  that width and vocabulary, so that nothing but the output layer and the cross-entropy runs);
- the two output-layer matrix products alone, full size, no softmax: logits = h W^T and dlogits W, the least
  arithmetic any exact step must do (124 GFLOP).

    python benchmarks/output_layer_cost.py [--repeats 3]

Writes benchmarks/results/output_layer_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results

from hf_memmit.unlearning import row_losses

ROWS, TOKENS, HIDDEN, VOCAB = 64, 150, 128, 50257


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=0, n_head=4, n_positions=TOKENS)
    model = GPT2LMHeadModel(config).eval()
    model.requires_grad_(False)
    model.transformer.wte.weight.requires_grad_(False)
    ids = torch.randint(0, VOCAB, (ROWS, TOKENS))
    # the hidden states need a gradient (as the masked layers below them do in a real step)
    model.transformer.wpe.weight.requires_grad_(True)

    def library_step():
        model.zero_grad(set_to_none=True)
        row_losses(model, ids, None).sum().backward()

    n = ROWS * (TOKENS - 1)
    h = torch.randn(n, HIDDEN)
    w = model.lm_head.weight.detach()
    logits = h @ w.T
    forward = best_of(lambda: h @ w.T, args.repeats)
    backward = best_of(lambda: logits @ w, args.repeats)
    library = best_of(library_step, args.repeats)
    gflop = 2 * n * HIDDEN * VOCAB / 1e9
    rows = [
        {"what": "row_losses + backward (the library's step loss, output layer only)", "seconds": round(library, 3),
         "GFLOPS": ""},
        {"what": "logits = h W^T, full size", "seconds": round(forward, 3), "GFLOPS": round(gflop / forward, 1)},
        {"what": "dlogits W, full size", "seconds": round(backward, 3), "GFLOPS": round(gflop / backward, 1)},
        {"what": "the two products together (the floor)", "seconds": round(forward + backward, 3),
         "GFLOPS": round(2 * gflop / (forward + backward), 1)},
    ]
    steps = 72  # `hf-memmit unlearn RUN --method balanced_subnet --ratio 0.1 --epochs 3` on that model
    markdown = (f"# The output layer's share of an unlearning step: {n} positions x {HIDDEN} x {VOCAB}, fp32, "
                f"{torch.get_num_threads()} threads (best of {args.repeats})\n\n{md_table(rows, list(rows[0]))}\n\n"
                f"A 72-step run (quick language+noise, BalancedSubnet ratio 0.1, 3 epochs) spends at least "
                f"{steps * (forward + backward):.0f} s in the two products alone and {steps * library:.0f} s in "
                f"the library's output-layer loss and gradient, before the transformer blocks.\n")
    result = {"rows": rows, "positions": n, "hidden": HIDDEN, "vocab": VOCAB, "gflop_per_product": gflop,
              "environment": environment()}
    write_results("output_layer_cost", result, markdown)
    return result


if __name__ == "__main__":
    main()
