"""Your own model: scan any causal LM for the records it regurgitates, unlearn them as an adapter, merge."""

from .merge import merge_adapter
from .scan import scan_model
from .unlearn import METHOD_DEFAULTS, config_for, unlearn_records

__all__ = ["METHOD_DEFAULTS", "config_for", "merge_adapter", "scan_model", "unlearn_records"]
