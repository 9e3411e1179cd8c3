"""An independent float64 forward pass of the decoder architectures Swiftlet runs, in NumPy.

llama, qwen2 (q/k/v biases, NeoX RoPE), qwen3 (RMSNorm of each q and k head), phi3 (fused QKV and
gate-up tensors) and gemma3 (scaled embeddings, q/k norms, local and global RoPE bases, sliding windows,
post-attention and post-FFN norms, GELU with tanh's approximation).

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
    ARCHITECTURES = ("llama", "qwen2", "qwen3", "phi3", "gemma3", "qwen2moe", "qwen3moe", "olmoe")

    def __init__(self, path):
        r = gguf.GGUFReader(path)
        arch = _field(r, "general.architecture")
        if arch not in self.ARCHITECTURES:
            raise ValueError(f"unsupported architecture {arch!r} (supported: {', '.join(self.ARCHITECTURES)})")
        self.arch = arch
        p = arch + "."
        self.n_layer = int(_field(r, p + "block_count"))
        self.n_embd = int(_field(r, p + "embedding_length"))
        self.n_head = int(_field(r, p + "attention.head_count"))
        self.n_head_kv = int(_field(r, p + "attention.head_count_kv", self.n_head))
        self.eps = float(_field(r, p + "attention.layer_norm_rms_epsilon"))
        self.rope_base = float(_field(r, p + "rope.freq_base", 10000.0))
        self.head_dim = int(_field(r, p + "attention.key_length", self.n_embd // self.n_head))
        self.rope_dim = int(_field(r, p + "rope.dimension_count", self.head_dim))
        self.neox = arch != "llama"
        # Experts: softmax router, top-k, weights renormalised to sum 1 (not by qwen2moe, which adds a
        # shared expert gated by a sigmoid).
        self.n_expert = int(_field(r, p + "expert_count", 0))
        self.n_expert_used = int(_field(r, p + "expert_used_count", 0))
        self.norm_experts = arch not in ("qwen2moe", "olmoe")
        if _field(r, p + "rope.scaling.type") not in (None, "none"):
            raise ValueError("rope scaling is not implemented")
        # Per layer: RoPE base and sliding window (0: global).
        self.layer_base = [self.rope_base] * self.n_layer
        self.layer_window = [0] * self.n_layer
        self.attn_scale = 1 / np.sqrt(self.head_dim)
        if arch == "gemma3":
            window = int(_field(r, p + "attention.sliding_window", 0))
            if window > 0:
                pattern = _field(r, p + "attention.sliding_window_pattern", 6)
                for i in range(self.n_layer):
                    swa = bool(pattern[i]) if isinstance(pattern, list) else (pattern == 0 or i % pattern < pattern - 1)
                    if swa:
                        self.layer_window[i] = window
                        self.layer_base[i] = float(_field(r, p + "rope.freq_base_swa", 10000.0))
            if self.n_layer == 62:
                self.attn_scale = 1 / np.sqrt(self.n_embd // self.n_head)
        w = {}
        for t in r.tensors:
            a = gguf.quants.dequantize(t.data, t.tensor_type)
            # GGUF lists dims innermost first; NumPy's shape is the reverse.
            w[t.name] = np.asarray(a, dtype=np.float64).reshape([int(d) for d in reversed(t.shape)])
        # Fused tensors (phi3) split into the names the other architectures use.
        q_dim, kv_dim = self.n_head * self.head_dim, self.n_head_kv * self.head_dim
        for i in range(self.n_layer):
            b = f"blk.{i}."
            if b + "attn_qkv.weight" in w:
                qkv = w.pop(b + "attn_qkv.weight")
                w[b + "attn_q.weight"], w[b + "attn_k.weight"], w[b + "attn_v.weight"] = np.split(qkv, [q_dim, q_dim + kv_dim])
            if b + "ffn_gate.weight" not in w and b + "ffn_up.weight" in w:
                w[b + "ffn_gate.weight"], w[b + "ffn_up.weight"] = np.split(w[b + "ffn_up.weight"], 2)
        self.w = w
        self.output = w.get("output.weight", w["token_embd.weight"])  # tied embeddings

    @staticmethod
    def _rms_norm(x, weight, eps):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight

    def _rope(self, x, positions, base):
        # ggml's "normal" rope rotates adjacent pairs (x[2i], x[2i+1]) by pos * base^(-2i/d); NeoX rotates
        # (x[i], x[i + d/2]).
        d = self.rope_dim
        inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        if "rope_freqs.weight" in self.w:  # Llama 3's scaling: a divisor per frequency
            inv = inv / self.w["rope_freqs.weight"]
        ang = positions[:, None].astype(np.float64) * inv[None, :]  # (n, d/2)
        cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = x.copy()
        if self.neox:
            x0, x1 = x[..., :d // 2], x[..., d // 2:d]
            out[..., :d // 2] = x0 * cos - x1 * sin
            out[..., d // 2:d] = x0 * sin + x1 * cos
        else:
            x0, x1 = x[..., 0:d:2], x[..., 1:d:2]
            out[..., 0:d:2] = x0 * cos - x1 * sin
            out[..., 1:d:2] = x0 * sin + x1 * cos
        return out

    def _linear(self, h, name):
        y = self.mm(h, name + ".weight")
        bias = self.w.get(name + ".bias")
        return y if bias is None else y + bias

    def _maybe_norm(self, x, name):
        w = self.w.get(name)
        return x if w is None else self._rms_norm(x, w, self.eps)

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
        return self.mm(self.hidden(tokens), "output")

    def hidden(self, tokens):
        """The hidden states (n, n_embd) after the final norm, in float64, run as one causal batch."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n, hd, nh, nkv = len(tokens), self.head_dim, self.n_head, self.n_head_kv
        x = self.w["token_embd.weight"][tokens]
        if self.arch == "gemma3":
            x = x * np.sqrt(self.n_embd)
        pos = np.arange(n)
        causal = np.triu(np.full((n, n), -np.inf), k=1)
        for i in range(self.n_layer):
            b = f"blk.{i}."
            mask = causal
            if self.layer_window[i] > 0:
                mask = causal + np.tril(np.full((n, n), -np.inf), k=-self.layer_window[i])
            h = self._rms_norm(x, self.w[b + "attn_norm.weight"], self.eps)
            # q/k norms per head (Qwen 3, Gemma 3), or over the whole projection (OLMoE).
            q, k = self._linear(h, b + "attn_q"), self._linear(h, b + "attn_k")
            if self.w.get(b + "attn_q_norm.weight", np.zeros(0)).size == q.shape[1]:
                q = self._maybe_norm(q, b + "attn_q_norm.weight")
                k = self._maybe_norm(k, b + "attn_k_norm.weight")
            q, k = q.reshape(n, nh, hd), k.reshape(n, nkv, hd)
            v = self._linear(h, b + "attn_v").reshape(n, nkv, hd)
            if self.w.get(b + "attn_q_norm.weight", np.zeros(0)).size == hd:
                q = self._maybe_norm(q, b + "attn_q_norm.weight")
                k = self._maybe_norm(k, b + "attn_k_norm.weight")
            base = self.layer_base[i]
            q, k, v = self.round_qkv(self._rope(q, pos, base), self._rope(k, pos, base), v)
            group = nh // nkv
            k = np.repeat(k, group, axis=1)
            v = np.repeat(v, group, axis=1)
            s = np.einsum("qhd,khd->hqk", q, k) * self.attn_scale + mask[None]
            s -= s.max(axis=-1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=-1, keepdims=True)
            a = np.einsum("hqk,khd->qhd", self.round_probs(p), v).reshape(n, nh * hd)
            x = x + self._maybe_norm(self._linear(a, b + "attn_output"), b + "post_attention_norm.weight")
            h = self._rms_norm(x, self.w[b + "ffn_norm.weight"], self.eps)
            if self.n_expert > 0:
                x = x + self._moe(h, b)
                continue
            g = self.mm(h, b + "ffn_gate.weight")
            u = self.mm(h, b + "ffn_up.weight")
            if self.arch == "gemma3":
                act = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g ** 3)))
            else:
                act = g / (1 + np.exp(-g))
            x = x + self._maybe_norm(self.mm(act * u, b + "ffn_down.weight"), b + "post_ffw_norm.weight")
        return self._rms_norm(x, self.w["output_norm.weight"], self.eps)


def _moe_impl(self, h, b):
    """Each row through its top-k experts (by softmax probability, lower index first on ties), weighted by
    their probabilities renormalised to sum 1."""
    logits = h @ self.w[b + "ffn_gate_inp.weight"].T  # (n, n_expert)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros_like(h)
    gate, up, down = (self.w[b + n + ".weight"] for n in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"))
    for i in range(h.shape[0]):
        top = np.argsort(-p[i], kind="stable")[:self.n_expert_used]
        w = p[i, top] / p[i, top].sum() if self.norm_experts else p[i, top]
        for e, we in zip(top, w):
            g, u = gate[e] @ h[i], up[e] @ h[i]
            out[i] += we * (down[e] @ (g / (1 + np.exp(-g)) * u))
    if b + "ffn_gate_inp_shexp.weight" in self.w:
        g, u = h @ self.w[b + "ffn_gate_shexp.weight"].T, h @ self.w[b + "ffn_up_shexp.weight"].T
        shared = (g / (1 + np.exp(-g)) * u) @ self.w[b + "ffn_down_shexp.weight"].T
        gate = 1 / (1 + np.exp(-(h @ self.w[b + "ffn_gate_inp_shexp.weight"])))
        out += gate[:, None] * shared
    return out


NumpyLlama._moe = _moe_impl


def log_softmax(logits):
    z = np.asarray(logits, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - (np.log(np.exp(z - m).sum(axis=-1, keepdims=True)) + m)
