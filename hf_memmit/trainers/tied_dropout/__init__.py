"""Tied dropout: a fixed set of MLP hidden units per key (an example, a document), shared by example-tied
dropout (key = example id; Maini et al. 2023) and MemSinks (key = a hash of the document's tokens; Ghosal et
al. 2025, "Memorization Sinks").

Each MLP's hidden units split into *general* units (always on) and a *pool* (memorization units, "sinks").
A key owns a pseudo-random `p_mem` share of the pool, drawn from a counter-based hash of (key, unit, salt):
nothing is stored, no RNG is touched, and the same key gets the same units in every epoch, process and run.
The mask multiplies the input of every block's MLP down projection (GPT-2 `mlp.c_proj`, Llama-family
`mlp.down_proj`, GPT-NeoX `mlp.dense_4h_to_h`, ...: any layout `hf_memmit.models.mlp.find_mlps` knows) through
a forward pre-hook, so a masked unit contributes nothing and gets no gradient.

Modes (`TiedDropout.mode`): in training the key's own mask (general x 1, own pool units x 1, others x 0,
no rescaling, as both references); at evaluation `all` (pool units x p_mem, the mean field), `drop` (pool
units x 0; general units x 1 (`none`), x (g+p)/g (`code`, the references' formula) or x (g+(1-g)p)/g
(`mass`, the expected activation mass)), `seq` (the key's own training mask). `exclude` zeroes the pool
units of given keys in `all` and `seq`. `all` and `drop` need no keys, so they work with `generate()` and
the KV cache; `seq` with one key per row does too.

The two methods built on this core live here too: `example_tied` (example-tied dropout) and `memsinks/`
(MemSinks); `hf_memmit.trainers` exports their public names.
"""

from .config import CONFIG_ATTR, HASHES, LAYOUTS, MODES, RESCALES, TiedDropoutConfig
from .hooks import TiedDropout, attach_tied_dropout, down_projections, get_tied_dropout, tied_dropout_mode
from .keys import check_keys, general_units, hash63, key_of, key_units
from .trainer import TiedDropoutTrainer

__all__ = ["CONFIG_ATTR", "HASHES", "LAYOUTS", "MODES", "RESCALES", "TiedDropout", "TiedDropoutConfig",
           "TiedDropoutTrainer", "attach_tied_dropout", "check_keys", "down_projections", "general_units",
           "get_tied_dropout", "hash63", "key_of", "key_units", "tied_dropout_mode"]
