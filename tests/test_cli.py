import json

import pytest

from isojax import cli, theory
from isojax.runs.results import read_table

# Run in the float32 pass only (README: "Tests"): end to end, with no dtype-specific path of its own.
pytestmark = pytest.mark.float32_only


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


def test_check_bad_arguments(capsys):
    assert cli.main(["check", "--instances", "0"]) == 2
    assert cli.main(["check", "--only", "T42"]) == 2
    assert capsys.readouterr().err.count("isojax check: error:") == 2


def test_train_embed_measure_sweep_reproduce_commands(tmp_path, capsys):
    import numpy as np

    from isojax.models import checkpoint

    ckpt = tmp_path / "m.safetensors"
    assert cli.main(["train", "--data", "real:nile", "--steps", "5", "--seq-len", "32", "--d-model", "16",
                     "--heads", "2", "--layers", "1", "--seed", "3", "--windows", "3", "--samples", "3",
                     "--out", str(ckpt)]) == 0
    assert "forecast table" in capsys.readouterr().out
    forecasts = read_table(tmp_path / "m.forecast.csv")
    assert {r["forecaster"] for r in forecasts} >= {"decoder (real:nile)", "seasonal_naive", "naive"}
    meta = checkpoint.load(ckpt)[2]
    assert meta["data"] == "real:nile" and meta["steps"] == 5 and meta["seed"] == 3
    assert meta["tokenizer"]["name"] == "bins" and meta["config"].d_model == 16 and meta["arch"] == "decoder"
    # the checkpoint's own tokenizer by default; naming it again is fine
    for extra in ([], ["--tokenizer", "bins"]):
        assert cli.main(["embed", "--model", str(ckpt), "--data", "real:nile", "--out", str(tmp_path / "h.npz"),
                         *extra]) == 0
        hidden = np.load(tmp_path / "h.npz")["hidden"]
        assert hidden.shape[0] == 2 and hidden.shape[2] == 16  # embeddings + 1 layer
    assert cli.main(["measure", str(tmp_path / "h.npz"), "--measures", "isoscore", "cosine",
                     "--out", str(tmp_path / "m" / "layers.csv")]) == 0
    rows = read_table(tmp_path / "m" / "layers.csv")
    assert [r["layer"] for r in rows] == ["0", "1"] and {"isoscore", "cosine"} <= set(rows[0])
    assert "clustered_cosine" not in rows[0]
    assert all(0.0 <= float(r["isoscore"]) <= 1.0 for r in rows)
    for name in ("layers.csv.json", "layers.png", "layers.pdf"):
        assert (tmp_path / "m" / name).exists()
    assert cli.main(["sweep", "--families", "cone", "--knobs", "0", "1", "--n", "50", "--d", "4",
                     "--replicates", "1", "--out", str(tmp_path / "s.csv")]) == 0
    assert (tmp_path / "s.csv.json").exists()
    assert cli.main(["sweep", "--families", "banana", "--out", str(tmp_path / "b.csv")]) == 2
    assert not (tmp_path / "b.csv").exists()
    assert cli.main(["reproduce", "--only", "nope", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "figures").exists()


def test_sweep_config_file_is_used(tmp_path, capsys):
    spec = {"grid": {"family": ["cone"], "n": [40], "d": [3], "knob": [0.0, 2]}, "seed": 1,
            "out": str(tmp_path / "c.csv")}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert cli.main(["sweep", "--config", str(tmp_path / "spec.json")]) == 0
    rows = read_table(tmp_path / "c.csv")
    assert [float(r["knob"]) for r in rows] == [0.0, 2.0] and {r["n"] for r in rows} == {40}
    assert json.loads((tmp_path / "c.csv.json").read_text())["config"]["seed"] == 1


def test_measure_every_layout(tmp_path, capsys):
    """[n, d], [layers, n, d] and one named array per layer, in .npy, .npz and .safetensors, give the same
    numbers for the same layer."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    layers = [rng.normal(size=(30, 4)).astype(np.float32) * (i + 1) for i in range(3)]
    np.save(tmp_path / "one.npy", layers[0])
    np.save(tmp_path / "all.npy", np.stack(layers))
    np.savez(tmp_path / "named.npz", emb=layers[0], block1=layers[1], block2=layers[2])
    save_file({"h.10": layers[2], "h.0": layers[0], "h.2": layers[1]}, str(tmp_path / "named.safetensors"))
    got = {}
    for name in ("one.npy", "all.npy", "named.npz", "named.safetensors"):
        out = tmp_path / "out" / f"{name}.csv"
        assert cli.main(["measure", str(tmp_path / name), "--measures", "isoscore", "top1_variance",
                         "--out", str(out)]) == 0, capsys.readouterr().err
        got[name] = read_table(out)
    assert [r["layer"] for r in got["named.npz"]] == ["emb", "block1", "block2"]
    assert [r["layer"] for r in got["named.safetensors"]] == ["h.0", "h.2", "h.10"]  # natural order
    first = {k: got["one.npy"][0][k] for k in ("isoscore", "top1_variance")}
    for name in got:
        assert {k: got[name][0][k] for k in first} == first
    for name in ("named.npz", "named.safetensors"):
        assert [r["isoscore"] for r in got["all.npy"]] == [r["isoscore"] for r in got[name]]


def test_embed_text_rows_map_back_to_sentences(tmp_path, capsys):
    import numpy as np

    (tmp_path / "s.txt").write_text("the cat sat\n\nnumbers 1 2 3 go up\n")
    for pooling in (None, "mean", "first", "last"):
        out = tmp_path / f"{pooling}.npz"
        extra = ["--pooling", pooling] if pooling else []
        assert cli.main(["embed", "--model", "minilm", "--text", str(tmp_path / "s.txt"), *extra,
                         "--out", str(out)]) == 0
        z = np.load(out)
        hidden, index, position = z["hidden"], z["text_index"], z["token_position"]
        assert hidden.shape[0] == 7 and hidden.shape[1] == len(index) == len(position) and hidden.shape[2] == 384
        if pooling is None:
            tokens = hidden
            assert sorted(set(index.tolist())) == [0, 1] and position[0] == 0
        else:
            assert index.tolist() == [0, 1]
    # pooled rows are the pooling of the per-token rows of each sentence
    for i in (0, 1):
        rows = tokens[:, index_all(tmp_path) == i]
        np.testing.assert_allclose(np.load(tmp_path / "mean.npz")["hidden"][:, i], rows.mean(1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / "first.npz")["hidden"][:, i], rows[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / "last.npz")["hidden"][:, i], rows[:, -1], rtol=1e-5, atol=1e-5)


def index_all(folder):
    import numpy as np
    return np.load(folder / "None.npz")["text_index"]


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
