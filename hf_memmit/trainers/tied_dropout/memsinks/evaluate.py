"""Evaluating a MemSinks model the way the paper reports it (Ghosal et al. 2025, "Memorization Sinks"): loss gap
and (k, l) memorization of the repeated documents under each eval mode of the sinks, and a plain model (standard
training, dedup) under the one mode it has. The names of the modes are the keys of the result, shared by the
recipe and the benchmarks."""

from __future__ import annotations

from ....metrics.memsinks import kl_memorization, loss_report, mean_document_loss
from ..hooks import get_tied_dropout
from .collator import document_id

PLAIN = "plain"  # a model without sinks
SINKS_ON = "sinks_on"  # sinks as their mean (`all` mode)
OWN_SINKS = "own_sinks"  # each document's own sinks (`seq` mode)
DROP_RESCALES = ("none", "code", "mass")


def sinks_dropped(rescale: str) -> str:
    """The key of the sinks-dropped mode with one rescale of the general units."""
    return f"sinks_dropped_{rescale}"


HEADLINE = sinks_dropped("none")  # the deployment model: sinks dropped, general units as trained


def evaluate_memsinks(model, repeated, heldout, validation, *, k: int, l: int, sinks: bool,
                      general_validation=None) -> dict:
    """`loss_report` (L_rep, L_ho, gap, L_val) plus `kl_memorized` of the repeated documents, keyed by eval mode:
    {PLAIN: ...} for a model without sinks, else SINKS_ON, sinks_dropped(r) for each r in DROP_RESCALES and
    OWN_SINKS. With `general_validation` (documents of the general corpus when the repeated ones come from
    another domain), each mode also gets `L_val_general`."""
    sets = {"repeated": repeated, "heldout": heldout, "validation": validation}
    if general_validation is not None:
        sets["validation_general"] = general_validation

    def one(keyed=None):
        out = loss_report(model, repeated, heldout, validation, batch_context=keyed)
        if general_validation is not None:
            out["L_val_general"] = mean_document_loss(
                model, general_validation,
                batch_context=(lambda idx: keyed("validation_general", idx)) if keyed else None)
        out["kl_memorized"] = kl_memorization(model, repeated, k=k, l=l,
                                              batch_context=(lambda idx: keyed("repeated", idx)) if keyed else None)
        return out

    if not sinks:
        return {PLAIN: one()}
    td = get_tied_dropout(model)
    ids = {name: [document_id(d) for d in docs] for name, docs in sets.items()}
    result = {}
    with td.mode("all"):
        result[SINKS_ON] = one()
    for rescale in DROP_RESCALES:
        with td.mode("drop", rescale=rescale):
            result[sinks_dropped(rescale)] = one()
    with td.mode("seq"):
        result[OWN_SINKS] = one(keyed=lambda which, idx: td.keys([ids[which][i] for i in idx]))
    return result


__all__ = ["DROP_RESCALES", "HEADLINE", "OWN_SINKS", "PLAIN", "SINKS_ON", "evaluate_memsinks", "sinks_dropped"]
