"""Generate the golden files of tests/golden with the reference PyTorch implementations.

    PYTHONPATH=. python tests/golden/make_golden.py [bert gpt2 chronos chronos_gated minilm]

(default: the four tiny families; `minilm` rewrites minilm_hidden.npz). Needs torch, transformers,
chronos-forecasting, tokenizers, safetensors (and jax/flax for the comparison it prints); the tests that
read these files need none of the PyTorch side.

Each tiny family gets a folder <family>/ with config.json, model.safetensors, tokenizer.json (text models)
from a randomly initialised reference model (every parameter drawn afresh, biases and norm scales included,
so a wrong mapping cannot hide behind zeros and ones), and reference.npz: the inputs, the reference token
ids and mask, and the hidden states of every layer [n, L + 1, T, d] (padding included; the tests compare
real tokens only).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
TEXTS = ["The quick brown fox jumps over the lazy dog.", "3.14, 2.72, 1.41, 1.73",
         "Sunspot activity peaked in 1958 at 190.2.", "isotropy", "A series: 12, 15, 11, 19, 23, 20."]
CORPUS = TEXTS + ["the numbers rise and fall over time", "a model reads the series token by token",
                  "embeddings of numbers in language models", "0 1 2 3 4 5 6 7 8 9 10 100 1000",
                  "monthly airline passengers, 1949 to 1960", "temperature, rainfall and river flow"]


def randomize(model: torch.nn.Module, seed: int, std: float = 0.15) -> None:
    """Every parameter afresh: norm scales 1 + N(0, 0.2²), biases N(0, 0.2²), embeddings N(0, 1), weights
    N(0, std²)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1:
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * noise)
            elif any(k in name for k in ("embeddings", "wte", "wpe", "shared", "relative_attention_bias")):
                p.copy_(noise)
            else:
                p.copy_(std * noise)


def _save(folder: Path, model, tokenizer=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save(str(folder / "tokenizer.json"))
    for extra in ("generation_config.json",):
        (folder / extra).unlink(missing_ok=True)


def _stack(out) -> np.ndarray:
    return torch.stack(out.hidden_states, 1).numpy().astype(np.float32)  # [n, L + 1, T, d]


def _reference_ids(tok_file: Path, pad: str, texts: list[str]):
    from transformers import PreTrainedTokenizerFast
    ref_tok = PreTrainedTokenizerFast(tokenizer_file=str(tok_file), pad_token=pad)
    enc = ref_tok(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def make_bert() -> None:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # the vocabulary by a fixed rule, not the trainer (whose ties fall in hash order, so reruns differ): every
    # character, alone and as a continuation "##c", and the words seen at least twice; the rest split into pieces
    words = [w for text in CORPUS for w in re.findall(r"\w+|[^\w\s]", text.lower())]
    chars = sorted({c for w in words for c in w})
    whole = sorted({w for w in words if len(w) > 1 and words.count(w) >= 2})
    vocab = special + chars + ["##" + c for c in chars if c.isalnum()] + whole
    tok.model = models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
        ("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu",
                     pad_token_id=0)
    model = BertModel(cfg, add_pooling_layer=False).eval()
    randomize(model, 1)
    folder = HERE / "bert"
    _save(folder, model, tok)
    ids, mask = _reference_ids(folder / "tokenizer.json", "[PAD]", TEXTS)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    np.savez_compressed(folder / "reference.npz", texts=np.array(TEXTS), ids=ids.numpy(),
                        mask=mask.numpy().astype(bool), hidden=_stack(out), torch=torch.__version__)


def make_gpt2() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=320, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=tok.get_vocab_size(), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                     activation_function="gelu_new", bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(cfg).eval()  # the head model: its tensors carry the `transformer.` prefix
    randomize(model, 2)
    folder = HERE / "gpt2"
    _save(folder, model, tok)
    ids, mask = _reference_ids(folder / "tokenizer.json", "<|endoftext|>", TEXTS)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    np.savez_compressed(folder / "reference.npz", texts=np.array(TEXTS), ids=ids.numpy(),
                        mask=mask.numpy().astype(bool), hidden=_stack(out),
                        logits=out.logits.numpy().astype(np.float32), torch=torch.__version__)


def _series() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    t = np.arange(60)
    a = 10 + 3 * np.sin(t[:40] / 4) + rng.normal(0, 0.5, 40)  # positive, seasonal
    b = rng.normal(0, 1, 25).cumsum()  # a random walk through 0
    b[[3, 10, 11]] = np.nan  # missing values
    c = np.zeros(12)  # all zero: the scale falls back to 1
    d = 1000 * (1 + 0.01 * t) + rng.normal(0, 40, 60)  # longer than the context: cut to its last values
    e = np.array([-2.5])
    return [a, b, c, d, e]


def make_chronos(name: str, feed_forward: str, seed: int) -> None:
    from chronos import ChronosPipeline
    from chronos.utils import left_pad_and_stack_1D
    from transformers import T5Config, T5ForConditionalGeneration
    chronos_config = dict(tokenizer_class="MeanScaleUniformBins",
                          tokenizer_kwargs=dict(low_limit=-15.0, high_limit=15.0),
                          context_length=48, prediction_length=8, n_tokens=256, n_special_tokens=2, pad_token_id=0,
                          eos_token_id=1, use_eos_token=True, model_type="seq2seq", num_samples=4, temperature=1.0,
                          top_k=50, top_p=1.0)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=256, d_model=32, d_kv=12, num_heads=4, d_ff=48, num_layers=2, num_decoder_layers=1,
                   relative_attention_num_buckets=16, relative_attention_max_distance=24,
                   feed_forward_proj=feed_forward,
                   layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                   chronos_config=chronos_config)
    model = T5ForConditionalGeneration(cfg).eval()
    randomize(model, seed)
    folder = HERE / name
    _save(folder, model)
    pipe = ChronosPipeline.from_pretrained(str(folder))
    series = _series()
    context = left_pad_and_stack_1D([torch.tensor(s) for s in series])  # [n, T], NaN on the left
    ids, mask, scale = pipe.tokenizer.context_input_transform(context)
    with torch.no_grad():
        out = pipe.model.model.encoder(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        last, _ = pipe.embed(context)  # the pipeline's own embedding: the last hidden state
    hidden = _stack(out)
    assert np.array_equal(hidden[:, -1], last.numpy().astype(np.float32))
    np.savez_compressed(folder / "reference.npz", series=context.numpy(), ids=ids.numpy(), mask=mask.numpy(),
                        scale=scale.numpy(), hidden=hidden, torch=torch.__version__)


def make_minilm() -> None:
    """minilm_hidden.npz: hidden states (layers 0, 1, 3, 6) of all-MiniLM-L6-v2 for four sentences."""
    from transformers import BertModel

    from isojax import pretrained
    texts = TEXTS[:4]
    ids, mask = pretrained.encode(texts)
    model = BertModel.from_pretrained(str(pretrained.model_dir())).eval()
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long),
                    output_hidden_states=True)
    layers = [0, 1, 3, 6]
    ref = np.stack([out.hidden_states[n].numpy() for n in layers], 1)  # [n, L, T, d]
    np.savez_compressed(HERE / "minilm_hidden.npz", texts=np.array(texts), ids=ids, mask=mask, layers=np.array(layers),
                        hidden=ref.astype(np.float32), torch=torch.__version__)


def report(name: str) -> None:
    """isojax against the reference just written: max |error| / max |reference| per layer, on real tokens."""
    import jax
    import jax.numpy as jnp

    from isojax import pretrained
    from isojax import transformer as tf
    if name == "minilm":
        return
    ref = np.load(HERE / name / "reference.npz")
    params, config, _ = pretrained.load(HERE / name)
    mask = ref["mask"].astype(bool)
    ours = np.asarray(jax.vmap(lambda t, m: tf.forward(params, t, config, key_mask=m)[0])(
        jnp.asarray(ref["ids"]), jnp.asarray(mask)))
    real = np.broadcast_to(mask[:, None, :, None], ours.shape)
    err = np.where(real, np.abs(ours - ref["hidden"]), 0).max((0, 2, 3))
    scale = np.where(real, np.abs(ref["hidden"]), 0).max((0, 2, 3))
    print(f"{name}: relative max error per layer {np.array2string(err / scale, precision=2)}")


if __name__ == "__main__":
    makers = {"bert": make_bert, "gpt2": make_gpt2, "chronos": lambda: make_chronos("chronos", "relu", 3),
              "chronos_gated": lambda: make_chronos("chronos_gated", "gated-gelu", 4), "minilm": make_minilm}
    for family in sys.argv[1:] or ["bert", "gpt2", "chronos", "chronos_gated"]:
        makers[family]()
        report(family)
