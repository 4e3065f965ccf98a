"""Train-time mitigation as `transformers.Trainer` subclasses: regularizers, fine-tuning recipes, MemSinks."""
