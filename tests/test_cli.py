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
