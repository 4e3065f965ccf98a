"""Every unlearning method on one trained TinyMem run: memorization and accuracy (or perplexity) before and
after, forget/retain sizes and seconds, in one run. Uses the same code path as `hf-memmit unlearn`.

    python benchmarks/unlearning_table.py --model RUN_DIR [--methods balanced_subnet,act] [--retain-size 1000]

Writes benchmarks/results/unlearning_<run name>.{json,md}. Settings per method are below (one point of each
method's grid, chosen to fit a CPU budget); `--set method.key=value` overrides them.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import environment, md_table, write_results  # noqa: E402

from hf_memmit.tinymem import run_unlearning  # noqa: E402
from hf_memmit.unlearning import method_names  # noqa: E402

SETTINGS = {
    "greedy": {"ratio": 1e-4},
    "sou": {"ratio": 0.01},
    "durable": {"ratio": 0.01},
    "durable_agg": {"ratio": 0.01},
    "subnet": {"ratio": 0.05, "epochs": 1},
    "balanced_subnet": {"ratio": 0.1, "epochs": 3},
    "zero": {"ratio": 0.01},
    "act": {"ratio": 0.01},
    "slim": {"ratio": 0.01},
    "hc": {"ratio": 0.01},
    "ig": {"ratio": 0.01},
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a finished TinyMem run directory")
    p.add_argument("--methods", default=",".join(method_names()))
    p.add_argument("--retain-size", type=int, default=1000)
    p.add_argument("--set", action="append", default=[], help="method.key=value")
    p.add_argument("--tag", default="", help="suffix of the result files, to keep several settings apart")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    settings = {k: dict(v) for k, v in SETTINGS.items()}
    for item in args.set:
        key, value = item.split("=", 1)
        method, field = key.split(".", 1)
        settings.setdefault(method, {})[field] = json.loads(value)
    rows, records = [], []
    for method in args.methods.split(","):
        try:
            rec = run_unlearning(args.model, method, None, settings.get(method, {}), args.retain_size)
        except Exception as err:  # a failing method is a result to report, not a reason to stop the table
            traceback.print_exc()
            rows.append({"method": method, "error": f"{type(err).__name__}: {err}"})
            continue
        records.append(rec)
        b, a = rec["before"], rec["after"]
        quality = "accuracy" if "accuracy" in b else "perplexity"
        rows.append({"method": method, "settings": json.dumps(settings.get(method, {})),
                     "mem_before": b["memorized"], "mem_after": a["memorized"],
                     f"{quality}_before": b[quality], f"{quality}_after": a[quality], "seconds": rec["seconds"],
                     "forget_rows": rec["forget_rows"], "retain_rows": rec["retain_rows"]})
        print(rows[-1], flush=True)
    name = Path(args.model).name
    cols = list(dict.fromkeys(k for r in rows for k in r))
    md = f"## Unlearning on `{name}`\n\n{md_table(rows, cols)}\n"
    write_results(f"unlearning_{name}{'_' + args.tag if args.tag else ''}", {"model": args.model, "rows": rows, "records": records,
                                         "environment": environment()}, md, args.out)


if __name__ == "__main__":
    main()
