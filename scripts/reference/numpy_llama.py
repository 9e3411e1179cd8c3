"""An independent float64 forward pass of the llama architecture in NumPy.

Reads a GGUF file with gguf-py, dequantizes every tensor with `gguf.quants.dequantize` and computes the
log-probabilities of each next token, teacher-forced, in float64 throughout. It shares no code with
llama.cpp or Swiftlet, so it checks the exact reference made by llama.cpp on the F32 file.
"""
import numpy as np
import gguf


def _field(reader, key, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    v = f.contents()
    return v


class NumpyLlama:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch != "llama":
            raise ValueError(f"unsupported architecture {arch!r} (only llama)")
        p = arch + "."
        self.n_layer = int(_field(r, p + "block_count"))
        self.n_embd = int(_field(r, p + "embedding_length"))
        self.n_head = int(_field(r, p + "attention.head_count"))
        self.n_head_kv = int(_field(r, p + "attention.head_count_kv", self.n_head))
        self.eps = float(_field(r, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(r, p + "rope.freq_base", 10000.0))
        self.head_dim = self.n_embd // self.n_head
        self.rope_dim = int(_field(r, p + "rope.dimension_count", self.head_dim))
        if _field(r, p + "rope.scaling.type") not in (None, "none"):
            raise ValueError("rope scaling is not implemented")
        w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            # GGUF lists dims innermost first; NumPy's shape is the reverse.
            w[t.name] = np.asarray(a, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
        self.w = w
        self.output = w.get("output.weight", w["token_embd.weight"])  # tied embeddings

    @staticmethod
    def _rms_norm(x, weight, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def _rope(self, x, positions):
        # ggml's "normal" rope rotates adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d).
        d = self.rope_dim
        inv = self.rope_base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        ang = positions[:, None].astype(np.float64) * inv[None, :]  # (n, d/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = x.copy()
        x0, x1 = x[..., 0:d:2], x[..., 1:d:2]
        out[..., 0:d:2] = x0 * cos - x1 * sin
        out[..., 1:d:2] = x0 * sin + x1 * cos
        return out

    def mm(self, x, name):
        """x @ W.T for weight `name` ("output" for the head). Subclasses round x here (activation_quantization.py)."""
        return x @ (self.output if name == "output" else self.w[name]).T

    def round_qkv(self, q, k, v):
        """q, k and v after RoPE, as attention reads them (a hook for simulated rounding)."""
        return q, k, v

    def round_probs(self, p):
        """Attention probabilities (a hook for simulated rounding)."""
        return p

    def logits(self, tokens):
        """Logits (n, vocab) in float64 for every position of `tokens`, run as one causal batch."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n, hd, nh, nkv = len(tokens), self.head_dim, self.n_head, self.n_head_kv
        x = self.w["token_embd.weight"][tokens]
        pos = np.arange(n)
        mask = np.triu(np.full((n, n), -np.inf), k=1)
        for i in range(self.n_layer):
            b = f"blk.{i}."
            h = self._rms_norm(x, self.w[b + "attn_norm.weight"], self.eps)
            q = self.mm(h, b + "attn_q.weight").reshape(n, nh, hd)
            k = self.mm(h, b + "attn_k.weight").reshape(n, nkv, hd)
            v = self.mm(h, b + "attn_v.weight").reshape(n, nkv, hd)
            q, k, v = self.round_qkv(self._rope(q, pos), self._rope(k, pos), v)
            group = nh // nkv
            k = np.repeat(k, group, axis=1)
            v = np.repeat(v, group, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd) + mask[None]
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            a = np.einsum("hqk,khd->qhd", self.round_probs(p), v).reshape(n, nh * hd)
            x = x + self.mm(a, b + "attn_output.weight")
            h = self._rms_norm(x, self.w[b + "ffn_norm.weight"], self.eps)
            g = self.mm(h, b + "ffn_gate.weight")
            u = self.mm(h, b + "ffn_up.weight")
            x = x + self.mm(g / (1 + np.exp(-g)) * u, b + "ffn_down.weight")
        x = self._rms_norm(x, self.w["output_norm.weight"], self.eps)
        return self.mm(x, "output")


def log_softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - (np.log(np.exp(z - m).sum(axis=-1, keepdims=True)) + m)
