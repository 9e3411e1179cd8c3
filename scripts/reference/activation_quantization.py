#!/usr/bin/env python3
"""Simulated activation quantization in the quantized matmuls of SmolLM2-135M (Q4_1/Q8_0), float64 elsewhere.

Weights: exactly dequantized (gguf-py). Before every matmul with a quantized weight (attn q/k/v/o, ffn
gate/up/down, output head = tied token_embd Q8_0) the activation row is quantized in blocks of 32 along the
reduction dimension. Metrics as in make_quality_fixture.py, against the fixture's exact (llama.cpp F32) run:
mean |dNLL| of the actual next token, top-1 agreement with exact's top-1, bucketed top-5 KL.

Usage: python activation_quantization.py FIXTURE MODEL OUT.json [--variants A,B,...] [--passages 0,4,...]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_llama import NumpyLlama, log_softmax  # noqa: E402

F16 = np.float16


def f16(a):
    return np.asarray(a, dtype=np.float64).astype(np.float32).astype(F16).astype(np.float64)


def quantize(x, scheme):
    """Returns (x', ds) with ds the Q8_1 min-term correction per block (or None).

    scheme: None | 'i8' (d f32) | 'i8h' (d stored f16) | 'q81' (i8h plus Q8_1's s = f16(d32*sum q))
            | 'i16' (d = amax/32639, f32)
    """
    if scheme is None:
        return x, None
    n, k = x.shape
    xb = x.reshape(n, k // 32, 32)
    qmax = 32639.0 if scheme == "i16" else 127.0
    amax = np.abs(xb).max(-1).astype(np.float32)
    d = (amax / np.float32(qmax)).astype(np.float32)  # float32, as ggml
    dsafe = np.where(d > 0, d, np.float32(1)).astype(np.float64)
    q = np.clip(np.rint(xb / dsafe[..., None]), -qmax, qmax)  # rint = round half to even
    q[d == 0] = 0.0
    dd = f16(d) if scheme in ("i8h", "q81") else d.astype(np.float64)
    xq = (dd[..., None] * q).reshape(n, k)
    ds = None
    if scheme == "q81":
        sq = q.sum(-1)
        s16 = (d * sq.astype(np.float32)).astype(F16).astype(np.float64)
        assert np.isfinite(s16).all(), "Q8_1 s overflowed f16"
        ds = s16 - dd * sq
    return xq, ds


# Variants: default scheme for all quantized matmuls, per-kind overrides, and f16 roundings in attention.
VARIANTS = {
    "A": dict(desc="none (float64 reference)", default=None),
    "B": dict(desc="int8, d=amax/127 f32", default="i8"),
    "C": dict(desc="int8, d stored f16 (x'=f16(d)*q)", default="i8h"),
    "C1": dict(desc="C + Q8_1 s=f16(d*sum q) in Q4_1 matmuls (exact llama.cpp activation maths)",
               default="q81", output="i8h"),
    "D": dict(desc="16-bit, d=amax/32639", default="i16"),
    "E": dict(desc="int8 (B), output head 16-bit", default="i8", output="i16"),
    "F": dict(desc="16-bit (D), ffn_down int8", default="i16", ffn_down="i8"),
    "G": dict(desc="B + f16 K, V and q", default="i8", kv16=True, q16=True),
    "H": dict(desc="D + f16 K and V cache", default="i16", kv16=True),
    "K": dict(desc="f16 K and V cache only (no act. quant)", default=None, kv16=True),
    "O": dict(desc="int8 (B) in output head only", default=None, output="i8"),
    "P": dict(desc="int8 (B) except output head and ffn_down at 16-bit", default="i8", output="i16",
              ffn_down="i16"),
    "L": dict(desc="llama.cpp emulation: C1 + f16 K, V, q and f16 softmax probs P", default="q81",
              output="i8h", kv16=True, q16=True, p16=True),
}


class QuantLlama(NumpyLlama):
    def __init__(self, path):
        super().__init__(path)
        # Q4_1 per-block mins m (out, in/32) for the Q8_1 s-term correction.
        self.mins = {}
        r = gguf.GGUFReader(path)
        for t in r.tensors:
            if t.tensor_type == gguf.GGMLQuantizationType.Q4_1:
                raw = np.asarray(t.data).reshape(int(t.shape[1]), -1, 20)
                m = raw[:, :, 2:4].copy().view(F16)[..., 0].astype(np.float64)
                self.mins[t.name] = m

    cfg = {}

    def mm(self, x, name):
        kind = "output" if name == "output" else name.split(".")[2]
        xq, ds = quantize(x, self.cfg.get(kind, self.cfg.get("default")))
        y = super().mm(xq, name)
        if ds is not None and name in self.mins:
            y += ds @ self.mins[name].T
        return y

    def round_qkv(self, q, k, v):
        if self.cfg.get("kv16"):
            k, v = f16(k), f16(v)
        return (f16(q) if self.cfg.get("q16") else q), k, v

    def round_probs(self, p):
        return f16(p) if self.cfg.get("p16") else p

    def logits_v(self, tokens, cfg):
        self.cfg = cfg
        return self.logits(tokens)


def score(passage, lp):
    """Per-passage sums: |dNLL|, top-1 agreement, bucketed KL (as make_quality_fixture.py)."""
    t = passage["token_ids"]
    n = len(t) - 1
    idx = np.arange(n)
    top = np.array(passage["top_ids"])
    e_top = np.array(passage["exact"]["top_logprobs"])
    e_nll = np.array(passage["exact"]["nll"])
    q_nll = -lp[idx, t[1:]]
    q_top = np.take_along_axis(lp[:n], top, 1)
    p, qq = np.exp(e_top), np.exp(q_top)
    pt, qt = np.clip(1 - p.sum(1), 0, None), np.clip(1 - qq.sum(1), 1e-300, None)
    kl = (p * (e_top - q_top)).sum(1) + np.where(pt > 0, pt * np.log(np.where(pt > 0, pt, 1) / qt), 0)
    agree = lp[:n].argmax(1) == np.array(passage["exact"]["top1"])
    return dict(n=n, dnll=float(np.abs(q_nll - e_nll).sum()), agree=int(agree.sum()), kl=float(kl.sum()),
                nll=float(q_nll.sum()), tok_nll=[round(float(x), 7) for x in q_nll],
                tok_top1=[int(x) for x in lp[:n].argmax(1)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fixture")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--passages", default=None)
    a = ap.parse_args()
    fx = json.load(open(a.fixture))
    ps = fx["passages"]
    sel = list(range(len(ps))) if a.passages is None else [int(i) for i in a.passages.split(",")]
    res = json.load(open(a.out)) if os.path.exists(a.out) else {}
    t0 = time.time()
    m = QuantLlama(a.model)
    print(f"loaded in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    for v in a.variants.split(","):
        cfg = VARIANTS[v]
        rv = res.setdefault(v, {"desc": cfg["desc"], "passages": {}})
        for i in sel:
            name = ps[i]["name"]
            if name in rv["passages"] and "tok_nll" in rv["passages"][name]:
                continue
            t1 = time.time()
            lp = log_softmax(m.logits_v(ps[i]["token_ids"], cfg))
            rv["passages"][name] = score(ps[i], lp)
            s = rv["passages"][name]
            print(f"{v} {name}: n={s['n']} |dNLL|={s['dnll'] / s['n']:.5f} top1={s['agree'] / s['n']:.4f} "
                  f"({time.time() - t1:.0f} s)", file=sys.stderr, flush=True)
            with open(a.out, "w") as f:
                json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
