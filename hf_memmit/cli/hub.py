"""`hf-memmit push` and `hf-memmit suite`: TinyMem checkpoints, adapters and datasets on the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import click

from ..data.config import ARTIFACTS, PROFILES, TASKS
from .common import console, fmt, metrics_table
from .group import main


def _csv(kind, allowed=None):
    """A click callback: "a,b" (or the option repeated) -> a tuple of `kind`, each checked against `allowed`."""
    def parse(ctx, param, values):
        out = tuple(kind(v.strip()) for value in values for v in value.split(",") if v.strip())
        bad = [v for v in out if allowed is not None and v not in allowed]
        if bad:
            raise click.BadParameter(f"{bad[0]!r} is not one of {', '.join(map(str, allowed))}")
        return out
    return parse


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
@click.option("--repo-id", required=True, help="Target model repo, ORG/NAME.")
@click.option("--private", is_flag=True, help="Create the repo private.")
@click.option("--dataset-repo", default=None, help="Also push the run's data as a config of this dataset repo.")
@click.option("--base-model", default=None, help="Adapters: the base checkpoint's repo id (ORG/NAME).")
def push(path, repo_id, private, dataset_repo, base_model):
    """Push a finished TinyMem run directory, or an unlearning adapter folder, to the Hub with its card."""
    from ..data import build_tinymem
    from ..hub import check_repo_id, push_adapter, push_checkpoint, push_dataset
    from ..hub.files import UNLEARNING_FILE
    from ..tinymem import run_data_config

    try:
        check_repo_id(repo_id)
        if (Path(path) / UNLEARNING_FILE).exists():
            record = push_adapter(path, repo_id, base_model=base_model, private=private)
            console.print(metrics_table(f"{record['method']} adapter -> {repo_id}",
                                        {"before": record["before"], "after": record["after"]}))
        else:
            pushed = push_checkpoint(path, repo_id, private=private, dataset_repo=dataset_repo)
            if dataset_repo:
                push_dataset(build_tinymem(run_data_config(path)), dataset_repo, private=private)
            console.print(metrics_table(f"{path} -> {repo_id}", {"measured at push": pushed["hub"]["measured"]}))
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    console.print(f"pushed to [bold]{repo_id}[/]")


@main.command()
@click.option("--push-to", "org", required=True, help="User or organization that receives the repos.")
@click.option("--tasks", multiple=True, callback=_csv(str, TASKS), help="Comma-separated; default all.")
@click.option("--artifacts", multiple=True, callback=_csv(str, ARTIFACTS), help="Comma-separated; default all.")
@click.option("--layers", multiple=True, callback=_csv(int), help="Comma-separated; default 2,4,8,16.")
@click.option("--profiles", multiple=True, callback=_csv(str, PROFILES), help="Comma-separated; default paper.")
@click.option("--seeds", multiple=True, callback=_csv(int), help="Comma-separated; default 0.")
@click.option("--work-dir", type=click.Path(file_okay=False), default="runs/suite", show_default=True,
              help="Where the cells' run directories live (kept, so an interrupted suite resumes).")
@click.option("--private", is_flag=True, help="Create the repos private.")
@click.option("--no-data", is_flag=True, help="Do not push the datasets to ORG/tinymem-data.")
@click.option("--dry-run", is_flag=True, help="Only list the cells and what would be done.")
def suite(org, tasks, artifacts, layers, profiles, seeds, work_dir, private, no_data, dry_run):
    """Train and push the TinyMem grid task x artifact x layers x profile x seed to ORG, one repo per cell
    (ORG/tinymem-TASK-ARTIFACT-Ll-PROFILE-sSEED); cells already on the Hub are skipped."""
    from ..hub import run_suite, suite_grid
    from ..models import LAYERS

    try:
        cells = suite_grid(tasks or TASKS, artifacts or ARTIFACTS, layers or LAYERS, profiles or ("paper",),
                           seeds or (0,))

        def show(r):
            extra = "  ".join(f"{k} {fmt(v)}" for k, v in r.get("measured", {}).items()
                              if k in ("memorized", "accuracy", "perplexity"))
            console.print(f"{r['cell']}: {r['status']} -> {r['action']}  {extra}")

        records = run_suite(org, cells, work_dir, private=private, push_data=not no_data, dry_run=dry_run,
                            on_event=show)
    except (ValueError, FileNotFoundError) as err:
        raise click.ClickException(str(err)) from err
    done = sum(r["action"] != "skip" for r in records)
    console.print(f"{len(records)} cells, {done} {'to do' if dry_run else 'trained or pushed'}, "
                  f"{len(records) - done} skipped")
