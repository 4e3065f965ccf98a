"""`hf-memmit measure` on a folder that holds no model: one line of error and a non-zero exit, no traceback."""

from click.testing import CliRunner

from hf_memmit.cli import main


def test_measure_refuses_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    res = CliRunner().invoke(main, ["measure", str(tmp_path)])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)  # click.ClickException, not a crash
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(tmp_path) in lines[0]
    assert not (tmp_path / "memorization.json").exists()
