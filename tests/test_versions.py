"""The tested stack: no drift from constraints.txt, and the transformers-needs-newer-peft combination handled."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


def run_python(script: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=300, check=False, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def test_no_dependency_drift():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_versions.py")], capture_output=True,
                          text=True, timeout=60, check=False)
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    assert "transformers: " in done.stdout and "peft: " in done.stdout


def test_drift_is_reported_by_name(tmp_path):
    from packaging.requirements import Requirement

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from check_versions import drift
    finally:
        sys.path.pop(0)
    report, drifted = drift([Requirement("peft==0.0.1"), Requirement("torch>=1"),
                             Requirement("surely-not-installed-pkg==1.0")])
    assert len(drifted) == 1 and drifted[0].startswith("  peft: ") and "==0.0.1" in drifted[0]
    assert any("surely-not-installed-pkg: absent" in line for line in report)


# transformers 5.24 demands peft >= 0.22 in its own adapter methods; the subprocesses below make the installed
# transformers demand a peft newer than any release, which is the same combination whatever versions CI has.
SIMULATE_GAP = """
    import transformers.integrations.peft as tf_peft
    tf_peft.MIN_PEFT_VERSION = "99.0.0"
"""


def test_import_warns_once_naming_both_versions():
    done = run_python(SIMULATE_GAP + """
    import importlib.metadata as md, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import hf_memmit
        import hf_memmit.tuners, hf_memmit.unlearning
        import importlib; importlib.import_module("hf_memmit")
    gap = [str(w.message) for w in caught if "requires peft >= 99.0.0" in str(w.message)]
    assert len(gap) == 1, gap
    assert f"transformers {md.version('transformers')}" in gap[0] and f"peft {md.version('peft')}" in gap[0], gap
    assert "model.disable_adapters()" in gap[0] and "merge_and_unload() are not affected" in gap[0], gap
    print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_no_warning_when_versions_agree():
    from hf_memmit.compat import peft_version_gap

    from transformers.integrations import peft as tf_peft
    from packaging.version import Version
    import importlib.metadata as md

    expected = None if Version(md.version("peft")) >= Version(tf_peft.MIN_PEFT_VERSION) else "gap"
    assert (peft_version_gap() is None) == (expected is None)


def test_peft_paths_work_when_transformers_wants_a_newer_peft(tmp_path):
    """unlearn, PeftModel save/load, disable_adapter and merge_and_unload under the version gap; transformers' own
    `disable_adapters` is the part that refuses (as transformers 5.24 + peft 0.21 does)."""
    done = run_python(SIMULATE_GAP + f"""
    import warnings
    warnings.simplefilter("ignore")
    import torch
    from peft import PeftModel
    from hf_memmit import BalancedSubnetConfig, unlearn
    import sys; sys.path.insert(0, "tests")
    from _tiny_models import tiny_llama, token_rows

    model, x = tiny_llama(), token_rows(4)
    with torch.no_grad():
        base_logits = model(x).logits
    config = BalancedSubnetConfig(ratio=0.1, epochs=1, batch_size=2)
    peft_model = unlearn(model, config, x, retain=token_rows(4, seed=1), progress=False)
    with torch.no_grad():
        masked = peft_model(x).logits
        with peft_model.disable_adapter():
            assert torch.equal(peft_model(x).logits, base_logits)
    assert not torch.equal(masked, base_logits)
    peft_model.save_pretrained({str(tmp_path / 'adapter')!r})
    loaded = PeftModel.from_pretrained(tiny_llama(), {str(tmp_path / 'adapter')!r})
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, masked)
        assert torch.equal(loaded.merge_and_unload()(x).logits, masked)
    plain = tiny_llama()
    try:
        plain.disable_adapters()
        raise SystemExit("transformers' disable_adapters did not refuse")
    except ValueError as err:
        assert "99.0.0" in str(err), err
    print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
