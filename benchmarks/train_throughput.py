"""Training throughput: the hf_memmit path (transformers.Trainer, as `hf-memmit train` runs it) against a
plain PyTorch loop that mirrors the reference (fp32, batch 128, DataLoader, AdamW), same model and data,
in one run. Timings alternate A/B over several repeats and report medians, so a busy core hurts both.

    python benchmarks/train_throughput.py                 # CPU, quick-profile math+noise, 4 layers
    python benchmarks/train_throughput.py --profile paper # paper-scale data (use on a GPU)

Writes benchmarks/results/train_throughput.{json,md}. The ratio is library tokens/s / reference tokens/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results  # noqa: E402

from hf_memmit.data import TinyMemDataConfig, build_tinymem  # noqa: E402
from hf_memmit.models import tinymem_model  # noqa: E402
from hf_memmit.tinymem import TrainConfig, make_trainer  # noqa: E402


def reference_loop(data: TinyMemDataConfig, n_layer: int, ids: torch.Tensor, batch_size: int, steps: int,
                   device: str) -> float:
    """The reference's training step: DataLoader over a tensor, model(ids, labels=ids), AdamW. Returns seconds."""
    model = tinymem_model(data.task, n_layer, seed=0).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.98), weight_decay=0.1)
    loader = DataLoader(TensorDataset(ids), batch_size=batch_size, shuffle=True, drop_last=True)
    done, start = 0, None
    while done < steps + 1:
        for (batch,) in loader:
            if done == 1:  # the first step warms up allocators; not timed
                _sync(device)
                start = time.perf_counter()
            batch = batch.to(device)
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == steps + 1:
                break
    _sync(device)
    return time.perf_counter() - start


class _StepTimer:
    """Times Trainer steps 2..N from the inside, so model/Trainer construction is not counted."""

    def __init__(self):
        from transformers import TrainerCallback

        timer = self

        class Cb(TrainerCallback):
            def on_step_end(self, args, state, control, **kw):
                if state.global_step == 1:
                    _sync(args.device.type)
                    timer.start = time.perf_counter()

            def on_train_end(self, args, state, control, **kw):
                _sync(args.device.type)
                timer.end = time.perf_counter()

        self.callback = Cb()


def library_path(data, dataset, train: TrainConfig, steps: int) -> float:
    sub = {"train": dataset["train"].select(range(steps * train.batch_size + train.batch_size))}
    timer = _StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer, _ = make_trainer(tmp, data, train, sub, seed=0, progress_bar=False, save=False, evaluate=False,
                                  callbacks=[timer.callback])
        trainer.train()
    return timer.end - timer.start


def _sync(device: str):
    if device == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick", choices=["quick", "paper", "tiny"])
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128, help="the reference's batch, used by both paths")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--bf16", action="store_true", help="library path with bf16 autocast (GPU)")
    p.add_argument("--torch-compile", action="store_true", help="library path with Trainer's torch_compile")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = TinyMemDataConfig(task="math", artifact="noise", profile=args.profile)
    dataset = build_tinymem(data)
    train = TrainConfig(n_layer=args.layers, batch_size=args.batch_size, epochs=1, bf16=args.bf16,
                        torch_compile=args.torch_compile).resolve(data)
    ids = torch.tensor(dataset["train"]["input_ids"], dtype=torch.long)
    need = (args.steps + 1) * args.batch_size
    if len(ids) < need:
        ids = ids.repeat(-(-need // len(ids)), 1)
        dataset["train"] = dataset["train"].select([i % len(dataset["train"]) for i in range(need)])
    tokens = args.steps * args.batch_size * ids.shape[1]
    lib, ref = [], []
    for _ in range(args.repeats):
        ref.append(tokens / reference_loop(data, args.layers, ids, args.batch_size, args.steps, device))
        lib.append(tokens / library_path(data, dataset, train, args.steps))
    rows = [{"path": "reference-style loop (fp32, DataLoader)", "tokens_per_s": statistics.median(ref)},
            {"path": "hf_memmit (Trainer)" + (" bf16" if args.bf16 else "") +
             (" compiled" if args.torch_compile else ""), "tokens_per_s": statistics.median(lib)}]
    ratio = rows[1]["tokens_per_s"] / rows[0]["tokens_per_s"]
    result = {"benchmark": "train_throughput", "device": device, "profile": args.profile, "layers": args.layers,
              "batch_size": args.batch_size, "steps": args.steps, "repeats": args.repeats,
              "reference_tokens_per_s": ref, "library_tokens_per_s": lib, "ratio": ratio,
              "floor": 3.0 if device == "cuda" else 1.0, "environment": environment()}
    md = (f"## Training throughput ({device}, math+noise {args.profile}, {args.layers} layers, batch {args.batch_size})"
          f"\n\n{md_table(rows, ['path', 'tokens_per_s'])}\n\nratio (library / reference): **{ratio:.3f}** "
          f"(floor {result['floor']}), median of {args.repeats} alternating repeats of {args.steps} steps\n")
    write_results("train_throughput" + ("_gpu" if device == "cuda" else ""), result, md,
                  args.out or Path(__file__).parent / "results")
    return result


if __name__ == "__main__":
    main()
