"""Generate tests/golden/minilm_hidden.npz with the reference PyTorch implementation (transformers)."""
import numpy as np, torch, jax, jax.numpy as jnp
from transformers import BertModel
from isojax import pretrained, transformer as tf
texts = ["The quick brown fox jumps over the lazy dog.", "3.14, 2.72, 1.41, 1.73", "Sunspot activity peaked in 1958 at 190.2.", "isotropy"]
ids, mask = pretrained.encode(texts)
model = BertModel.from_pretrained(str(pretrained.model_dir())).eval()
with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask, dtype=torch.long), output_hidden_states=True)
layers = [0, 1, 3, 6]
ref = np.stack([out.hidden_states[l].numpy() for l in layers], 1)  # [n, L, T, d]
np.savez_compressed("tests/golden/minilm_hidden.npz", texts=np.array(texts), ids=ids, mask=mask, layers=np.array(layers), hidden=ref.astype(np.float32), torch=torch.__version__)
params, cfg = pretrained.load_minilm()
hid = jax.vmap(lambda t, m: tf.forward(params, t, cfg, key_mask=m)[0])(jnp.asarray(ids), jnp.asarray(mask))
ours = np.asarray(hid)[:, layers]
err = np.abs(ours - ref)[np.broadcast_to(mask[:, None, :, None], ref.shape)].max()
print("max abs err on real tokens", err, ids.shape)
