"""`hf-memmit`: train TinyMem models, measure and mitigate their memorization from the shell."""

from . import bench, demo, finetune, hub, measure, merge, scan, train, unlearn  # noqa: F401  (each module adds its command to `main`)
from .group import main

__all__ = ["main"]
