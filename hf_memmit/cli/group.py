"""The `hf-memmit` command group; each command lives in its own module of this package."""

import click


@click.group()
@click.version_option(package_name="hf_memmit")
def main():
    """Find, measure and remove memorization in causal LMs (TinyMem, unlearning adapters, MemSinks)."""
