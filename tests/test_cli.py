import json

import pytest

from isojax import cli, theory


def test_check_json_parses(capsys):
    assert cli.main(["check", "--only", "T1a", "T5a", "--instances", "32", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["passed"] is True
    assert {r["statement"] for r in out["rows"]} == {"T1a", "T5a"}
    assert all(r["instances"] >= 32 for r in out["rows"])


def test_check_table_and_failure_exit_status(capsys, monkeypatch):
    assert cli.main(["check", "--only", "T1b", "--instances", "8"]) == 0
    assert "rows pass" in capsys.readouterr().out
    failing = lambda key, n: [theory.CheckRow("T9", "always wrong", 1.0, 0.5, n, False)]
    monkeypatch.setitem(theory.CHECKS, "T1b", failing)
    assert cli.main(["check", "--only", "T1b", "--instances", "8"]) == 1
    assert "NO" in capsys.readouterr().out


def test_check_bad_arguments():
    with pytest.raises(SystemExit):
        cli.main(["check", "--instances", "0"])
    with pytest.raises(SystemExit):
        cli.main(["check", "--only", "T42"])


def test_train_embed_sweep_reproduce_commands(tmp_path, capsys):
    ckpt = tmp_path / "m.safetensors"
    assert cli.main(["train", "--data", "real:nile", "--steps", "5", "--seq-len", "32", "--d-model", "16",
                     "--heads", "2", "--layers", "1", "--out", str(ckpt)]) == 0
    assert "forecast NMSE" in capsys.readouterr().out
    assert cli.main(["embed", "--model", str(ckpt), "--data", "real:nile", "--out", str(tmp_path / "h.npz")]) == 0
    import numpy as np
    assert np.load(tmp_path / "h.npz")["hidden"].shape[0] == 2  # embeddings + 1 layer
    assert cli.main(["sweep", "--families", "cone", "--knobs", "0", "1", "--n", "50", "--d", "4",
                     "--replicates", "1", "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv.json").exists()
    with pytest.raises(SystemExit):
        cli.main(["sweep", "--families", "banana", "--out", str(tmp_path / "b.csv")])
    assert not (tmp_path / "b.csv").exists()
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--only", "nope", "--out", str(tmp_path)])
    assert not (tmp_path / "figures").exists()


def test_reproduce_writes_figures_and_records_where_it_was_timed(tmp_path, capsys):
    assert cli.main(["reproduce", "--only", "shift_invariance", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "figures" / "shift_invariance.png").exists()
    assert "shift_invariance:" in capsys.readouterr().out
    import json
    timing = json.loads((tmp_path / "results" / "reproduce_timings.json").read_text())["quick"]["shift_invariance"]
    assert timing["seconds"] > 0 and timing["cores"] >= 1 and timing["devices"] and timing["jax"]


def test_version_and_help_with_defaults(capsys):
    import isojax

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"isojax {isojax.__version__}"
    parser = cli.build_parser()
    for action in parser._subparsers._group_actions[0].choices.values():
        for flag in action._actions:
            if flag.option_strings and flag.dest != "help":
                assert flag.help, f"{action.prog} {flag.option_strings} has no help text"
