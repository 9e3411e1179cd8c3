#!/usr/bin/env python3
"""Exact-arithmetic reference log-probabilities of a text corpus, and llama.cpp's own run beside them.

Run by hand, never in CI. Needs a venv outside the repository with
    pip install gguf numpy llama-cpp-python==0.3.36
Usage:
    V/bin/python scripts/reference/make_quality_fixture.py MODEL.gguf OUT.json [--f32 PATH] [--threads N]

For every passage of scripts/reference/corpus/ (tokenized with llama.cpp's tokenizer, at most 512 tokens),
teacher-forced, per position i (predicting token i + 1):
  (a) exact: llama.cpp on an F32 GGUF of the model's dequantized weights (llama_model_quantize with
      LLAMA_FTYPE_ALL_F32 and allow_requantize) with an f32 KV cache;
  (b) check: an independent float64 NumPy forward pass over gguf-py's dequantized tensors
      (numpy_llama.py); the script prints how far (a) and (b) are apart;
  (c) llamacpp: llama.cpp on the quantized file with its default settings, the path users get.
The fixture keeps, per position, the exact NLL of the actual next token, its top-1 id and top-5
(ids, log-probabilities), and llama.cpp's NLL, top-1 and log-probabilities at the exact top-5 ids.
"""
import argparse
import ctypes
import hashlib
import json
import os
import sys
import time

import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_llama import NumpyLlama, log_softmax  # noqa: E402

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MAX_PASSAGE = 512
TOP = 5
REFERENCE = "llama-cpp-python==0.3.36"


def make_f32(model, out):
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(model.encode(), out.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def load(path, threads, f32_cache):
    kw = dict(model_path=path, n_ctx=MAX_PASSAGE + 16, n_batch=MAX_PASSAGE, n_ubatch=MAX_PASSAGE,
              n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    if f32_cache:
        kw.update(type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    return llama_cpp.Llama(**kw)


def llama_logprobs(llm, tokens):
    llm.reset()
    llm.eval(tokens)
    return log_softmax(np.array(llm.scores[:len(tokens)], dtype=np.float32).astype(np.float64))


def passages(llm, join=False):
    """Corpus files in name order; a file longer than MAX_PASSAGE tokens is cut at paragraph breaks.
    join: the whole corpus as one text (cut the same way), for passages longer than a sliding window."""
    out = []
    files = [n for n in sorted(os.listdir(CORPUS)) if n.endswith(".txt")]
    texts = [(n, open(os.path.join(CORPUS, n), encoding="utf-8").read()) for n in files]
    if join:
        texts = [("corpus.txt", "\n\n".join(t for _, t in texts))]
    for name, text in texts:
        pieces = [text]
        while True:
            long = [p for p in pieces if len(tokenize(llm, p)) > MAX_PASSAGE]
            if not long:
                break
            p = long[0]
            breaks = [i for i in range(len(p)) if p.startswith("\n\n", i)]
            if not breaks:
                raise SystemExit(f"{name}: a paragraph is longer than {MAX_PASSAGE} tokens")
            cut = min(breaks, key=lambda i: abs(i - len(p) // 2)) + 2
            k = pieces.index(p)
            pieces[k:k + 1] = [p[:cut], p[cut:]]
        stem = name[:-4]
        for k, p in enumerate(pieces):
            out.append((stem if len(pieces) == 1 else f"{stem}-{k + 1}", p))
    return out


def tokenize(llm, text):
    # add_bos follows the model's tokenizer.ggml.add_bos_token, as Swiftlet's encode does.
    return llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)


def r(x):
    return round(float(x), 7)


def score(passages, exact, quant):
    """The fixture's passages and summary: per (name, text, token ids) with exact and llama.cpp's
    log-probabilities (positions x vocabulary), the exact top-5 and NLLs beside llama.cpp's."""
    out = []
    tot = {"n": 0, "dnll": 0.0, "agree": 0, "kl": 0.0, "nll": 0.0, "nll_exact": 0.0}
    for (name, text, t), e, q in zip(passages, exact, quant):
        n = len(t) - 1
        idx = np.arange(n)
        top = np.argsort(-e[:n], axis=1, kind="stable")[:, :TOP]
        e_top = np.take_along_axis(e[:n], top, 1)
        q_top = np.take_along_axis(q[:n], top, 1)
        e_nll, q_nll = -e[idx, t[1:]], -q[idx, t[1:]]
        q_top1 = q[:n].argmax(axis=1)
        # The same bucketed KL as QualityMetrics (Sources/Engine/Quality.swift), as a cross-check.
        p, qq = np.exp(e_top), np.exp(q_top)
        pt, qt = np.clip(1 - p.sum(1), 0, None), np.clip(1 - qq.sum(1), 1e-300, None)
        kl = (p * (e_top - q_top)).sum(1) + np.where(pt > 0, pt * np.log(np.where(pt > 0, pt, 1) / qt), 0)
        tot["n"] += n
        tot["dnll"] += float(np.abs(q_nll - e_nll).sum())
        tot["agree"] += int((q_top1 == top[:, 0]).sum())
        tot["kl"] += float(kl.sum())
        tot["nll"] += float(q_nll.sum())
        tot["nll_exact"] += float(e_nll.sum())
        out.append({
            "name": name,
            "text": text,
            "token_ids": [int(x) for x in t],
            "top_ids": top.tolist(),
            "exact": {"nll": [r(x) for x in e_nll], "top1": top[:, 0].tolist(),
                      "top_logprobs": [[r(x) for x in row] for row in e_top]},
            "llamacpp": {"nll": [r(x) for x in q_nll], "top1": q_top1.tolist(),
                         "top_logprobs": [[r(x) for x in row] for row in q_top]},
        })
    n = tot["n"]
    summary = {"positions": n,
               "llamacpp": {"mean_abs_delta_nll": tot["dnll"] / n, "top1_agreement": tot["agree"] / n,
                            "approximate_kl": tot["kl"] / n, "perplexity": float(np.exp(tot["nll"] / n))},
               "exact": {"perplexity": float(np.exp(tot["nll_exact"] / n))}}
    return out, summary


def main():
    global MAX_PASSAGE
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--f32", help="where to write the F32 GGUF (default: next to OUT, deleted after)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-numpy", action="store_true", help="skip check (b)")
    ap.add_argument("--max-passage", type=int, default=512, help="longest passage in tokens")
    ap.add_argument("--join", action="store_true", help="cut the corpus joined into one text (long passages)")
    ap.add_argument("--numpy-exact", action="store_true",
                    help="take (b), the float64 NumPy pass, as exact and (a) as its check: for architectures where "
                         "llama.cpp's F32 path still rounds (gemma3's GELU reads an f16 table)")
    args = ap.parse_args()
    MAX_PASSAGE = args.max_passage

    f32 = args.f32 or args.out + ".f32.gguf"
    if not os.path.exists(f32):
        make_f32(args.model, f32)
    exact_llm = load(f32, args.threads, f32_cache=True)
    texts = passages(exact_llm, join=args.join)
    tokens = [tokenize(exact_llm, t) for _, t in texts]
    print(f"{len(texts)} passages, {sum(map(len, tokens))} tokens", file=sys.stderr)
    exact = [llama_logprobs(exact_llm, t) for t in tokens]
    del exact_llm

    checks = {}
    if not args.skip_numpy:
        t0 = time.time()
        ref = NumpyLlama(args.model)
        worst_next, worst_top, worst_all = 0.0, 0.0, 0.0
        f32_runs = exact
        if args.numpy_exact:
            exact = []
        for t, lp in zip(tokens, f32_runs):
            np_lp = log_softmax(ref.logits(t))
            if args.numpy_exact:
                exact.append(np_lp)
            n = len(t) - 1
            idx = np.arange(n)
            top = np.argsort(-lp[:n], axis=1)[:, :TOP]
            worst_next = max(worst_next, float(np.abs(np_lp[idx, t[1:]] - lp[idx, t[1:]]).max()))
            worst_top = max(worst_top, float(np.abs(np.take_along_axis(np_lp[:n] - lp[:n], top, 1)).max()))
            worst_all = max(worst_all, float(np.abs(np_lp - lp).max()))
        checks = {"numpy_vs_exact_max_abs_dlogprob_next_token": worst_next,
                  "numpy_vs_exact_max_abs_dlogprob_top5": worst_top,
                  "numpy_vs_exact_max_abs_dlogprob_any_token": worst_all}
        if args.numpy_exact:
            checks["exact"] = "numpy float64"
        print(f"NumPy float64 vs llama.cpp F32 ({time.time() - t0:.0f} s): max |Δ logprob| next token "
              f"{worst_next:.2e}, exact top-5 {worst_top:.2e}, any token {worst_all:.2e}", file=sys.stderr)
        del ref

    quant_llm = load(args.model, args.threads, f32_cache=False)
    quant = [llama_logprobs(quant_llm, t) for t in tokens]

    out, summary = score([(name, text, t) for (name, text), t in zip(texts, tokens)], exact, quant)
    print(json.dumps(summary, indent=1), file=sys.stderr)
    with open(args.model, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "reference": REFERENCE,
        "model": os.path.basename(args.model),
        "model_sha256": sha,
        "exact_method": "float64 NumPy forward pass over gguf-py's dequantized weights (numpy_llama.py)"
        if args.numpy_exact else "llama.cpp on an F32 GGUF of the dequantized weights (LLAMA_FTYPE_ALL_F32), f32 KV cache",
        "llamacpp_method": "llama.cpp on the quantized file, default settings (f16 KV cache)",
        "threads": args.threads,
        "checks": checks,
        "summary": summary,
        "passages": out,
    }
    with open(args.out, "w") as f:
        json.dump(fixture, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")
    if not args.f32:
        os.remove(f32)


if __name__ == "__main__":
    main()
