"""`isojax embed --model DIR` for every supported Hugging Face folder (tests/golden: bert, gpt2, chronos,
chronos_gated): a Chronos folder embeds numeric series through the model's own tokenizer (--data), a BERT or
GPT-2 folder embeds sentences (--text) or serialized real series (--data); the same numbers as the library
(`pretrained.embed_series` / `embed_texts`, each golden-tested against its reference implementation); every
refusal one line naming what is accepted."""

import numpy as np
import pytest

from isojax import cli, pretrained
from isojax.data import tokens
from tests.conftest import ROOT

pytestmark = pytest.mark.float32_only

GOLDEN = ROOT / "tests" / "golden"


def _csv(folder):
    """Two series of different lengths in one CSV (the shorter one padded with empty cells is refused, so two
    columns of the same length, one longer than the model's context of 48 values)."""
    t = np.arange(60)
    a, b = np.sin(t / 4.0) * 3 + 10, np.linspace(-2.0, 5.0, 60) + 0.1 * np.cos(t)
    path = folder / "series.csv"
    path.write_text("a,b\n" + "".join(f"{float(x)!r},{float(y)!r}\n" for x, y in zip(a, b)))
    return path, [a, b]


@pytest.mark.parametrize("name", ["chronos", "chronos_gated"])
def test_a_chronos_folder_embeds_series_through_its_own_tokenizer(tmp_path, capsys, name):
    path, series = _csv(tmp_path)
    out = tmp_path / "h.npz"
    assert cli.main(["embed", "--model", str(GOLDEN / name), "--data", f"csv:{path}", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    z = np.load(out)
    model = pretrained.load(GOLDEN / name)
    want = pretrained.embed_series(model, series)
    assert z["hidden"].shape == (model.config.layers + 1, len(z["series_index"]), model.config.d_model)
    np.testing.assert_array_equal(z["hidden"], np.asarray(want.hidden))
    # each series cut to the model's last 48 values, plus EOS: 49 rows each, positions 0..48
    assert z["series_index"].tolist() == [0] * 49 + [1] * 49
    assert z["token_position"].tolist() == list(range(49)) * 2
    np.testing.assert_allclose(z["scale"], [np.abs(s[-48:]).mean() for s in series], rtol=1e-6)
    # one row per series, the mean over its tokens
    assert cli.main(["embed", "--model", str(GOLDEN / name), "--data", f"csv:{path}", "--pooling", "mean",
                     "--out", str(tmp_path / "m.npz")]) == 0
    pooled = np.load(tmp_path / "m.npz")["hidden"]
    np.testing.assert_allclose(pooled[:, 1], z["hidden"][:, 49:].mean(1), rtol=1e-5, atol=1e-6)
    assert "hidden states (3, 2, 32)" in capsys.readouterr().out


def test_chronos_on_an_npy_file_and_a_real_dataset_with_max_sequences(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "s.npy", rng.normal(size=(3, 20)).cumsum(1))
    out = tmp_path / "g.npz"
    assert cli.main(["embed", "--model", str(GOLDEN / "chronos"), "--data", f"npy:{tmp_path / 's.npy'}",
                     "--max-sequences", "2", "--out", str(out)]) == 0, capsys.readouterr().err
    z = np.load(out)
    assert z["series_index"].tolist() == [0] * 21 + [1] * 21 and z["scale"].shape == (2,)
    assert cli.main(["embed", "--model", str(GOLDEN / "chronos"), "--data", "real:nile", "--out", str(out)]) == 0
    assert np.load(out)["hidden"].shape == (3, 49, 32)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_a_text_folder_embeds_sentences_and_serialized_series(tmp_path, capsys, name):
    (tmp_path / "s.txt").write_text("the river rose\n1, 2, 3, 5\n")
    out = tmp_path / "t.npz"
    assert cli.main(["embed", "--model", str(GOLDEN / name), "--text", str(tmp_path / "s.txt"),
                     "--out", str(out)]) == 0, capsys.readouterr().err
    want = pretrained.embed_texts(GOLDEN / name, ["the river rose", "1, 2, 3, 5"])
    np.testing.assert_array_equal(np.load(out)["hidden"], np.asarray(want.hidden))
    assert cli.main(["embed", "--model", str(GOLDEN / name), "--data", "real:nile", "--out", str(out)]) == 0
    from isojax.data import real
    text = tokens.DigitTokenizer(precision=1, digits=3).to_text(real.load("nile")[0][:40])
    want = pretrained.embed_texts(GOLDEN / name, [text], max_len=128)
    np.testing.assert_array_equal(np.load(out)["hidden"], np.asarray(want.hidden))


@pytest.mark.parametrize("flags, message", [
    (["--model", "{golden}/chronos", "--text", "{tmp}/s.txt"], "a Chronos folder embeds numeric series, not text: "
                                                                 "give --data"),
    (["--model", "{golden}/gpt2", "--data", "gp:rbf_0.1"], "(a text model) embeds serialized real series: "
                                                            "--data real:<name> (or sentences with --text FILE)"),
    (["--model", "{golden}/gpt2", "--data", "real:nile", "--pooling", "mean"],
     "--pooling applies to --text and to a Chronos folder's --data"),
    (["--model", "{golden}/chronos", "--tokenizer", "bins"], "--tokenizer applies to isojax checkpoints"),
    (["--model", "{tmp}/empty"], "is not a file (a checkpoint from isojax train) nor a Hugging Face folder: it "
                                 "has no config.json. --model takes a checkpoint from `isojax train`"),
    (["--model", "{tmp}/nothing"], "no such file or folder; --model takes a checkpoint"),
    (["--model", "{tmp}/ckpt.safetensors", "--pooling", "mean"], "--pooling applies to --text and"),
    (["--model", "{golden}/chronos", "--data", "csv:{tmp}/none.csv"], "no such file"),
])
def test_embed_refusals_name_what_is_accepted(tmp_path, capsys, flags, message):
    (tmp_path / "s.txt").write_text("a sentence\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "ckpt.safetensors").write_bytes(b"")
    flags = [f.replace("{golden}", str(GOLDEN)).replace("{tmp}", str(tmp_path)) for f in flags]
    assert cli.main(["embed", *flags, "--out", str(tmp_path / "h.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("isojax embed: error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "h.npz").exists()


def test_embed_help_names_the_accepted_folders(capsys):
    with pytest.raises(SystemExit):
        cli.main(["embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in ("Hugging Face folder", "Chronos", "BERT", "GPT-2", "minilm", "isojax train"):
        assert name in text, name
