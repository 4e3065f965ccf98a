"""(k, l) exact-match memorization as an `evaluate` metric.

Imported from the package as `hf_memmit.metrics.Memorization`, and loadable offline as a script with
`evaluate.load(hf_memmit.metrics.MEMORIZATION_METRIC_PATH)`; evaluate then copies this file and imports it
as its own module. So: absolute imports only, one import per line (evaluate scans the import lines for
dependencies), and no other `evaluate` module class imported by name (evaluate picks the first it finds).
"""

import datasets
import evaluate

from hf_memmit.metrics.greedy import greedy_match, match_tokens

_DESCRIPTION = """\
Greedy exact-match memorization (Sakarvadia et al. 2025, Def 2.1): a row is memorized iff greedy decoding
from its prompt reproduces its target (the next l tokens) exactly. Returns the fraction and count of
memorized rows and the mean per-row token match. Two configurations:
- "default": predictions are the model's continuation token ids, one per target position (teacher-forced
  argmax at the target positions, or a greedy generation; exact match is the same either way), references
  are the target ids;
- "model": prompts and references (targets) are token ids and `compute(..., model=model)` runs the batched
  teacher-forced check itself (the same function as `hf_memmit.metrics.greedy_match`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of list of int): "default" config only. Predicted token ids per row; compared with the
        first len(reference) of them, missing positions count as misses.
    prompts (list of list of int): "model" config only. Prompt token ids per row (no padding).
    references (list of list of int): target token ids per row (no padding).
    model: "model" config only, required: a causal LM (transformers or any module returning `.logits`).
    batch_size (int): "model" config only, rows per forward pass (default 64).
    fp32 (bool): "model" config only, compute in float32 whatever the model's dtype (default True).
    pad_token_id (int): "model" config only, fills masked positions (default 0).
Returns:
    memorized_fraction (float): memorized rows / rows.
    memorized (int): rows reproduced exactly.
    total (int): rows scored.
    token_match (float): mean over rows of the fraction of target tokens predicted right.
Examples:
    >>> metric = Memorization()
    >>> metric.compute(predictions=[[1, 2, 3], [4, 5, 0]], references=[[1, 2, 3], [4, 5, 6]])
    {'memorized_fraction': 0.5, 'memorized': 1, 'total': 2, 'token_match': 0.8333333333333333}
"""

_CITATION = """\
@inproceedings{sakarvadia2025mitigating,
  title={Mitigating Memorization in Language Models},
  author={Sakarvadia, Mansi and Ajith, Aswathy and Khan, Arham and Hudson, Nathaniel and Geniesse, Caleb and
          Chard, Kyle and Yang, Yaoqing and Foster, Ian and Mahoney, Michael W.},
  booktitle={International Conference on Learning Representations},
  year={2025}
}
"""

CONFIGS = {"default": "predictions", "model": "prompts"}


class Memorization(evaluate.Metric):
    """Greedy exact-match memorization; see `_DESCRIPTION` for the "default" and "model" configurations."""

    def _info(self):
        if self.config_name not in CONFIGS:
            raise ValueError(f"config_name={self.config_name!r} is not supported; allowed: 'default', 'model'")
        tokens = datasets.Sequence(datasets.Value("int64"))
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({CONFIGS[self.config_name]: tokens, "references": tokens}),
        )

    def _compute(self, references, predictions=None, prompts=None, model=None, batch_size=64, fp32=True,
                 pad_token_id=0):
        if self.config_name == "model":
            if model is None:
                raise ValueError("the 'model' configuration needs compute(..., model=<causal LM>)")
            match = greedy_match(model, prompts, references, batch_size=batch_size, fp32=fp32,
                                 pad_token_id=pad_token_id)
        else:
            if model is not None:
                raise ValueError("model= is only used by the 'model' configuration: Memorization('model')")
            match = match_tokens(predictions, references)
        return match.summary()
