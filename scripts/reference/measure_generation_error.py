#!/usr/bin/env python3
"""How far llama.cpp's quantized logits in Tests/ModelsTests/Fixtures/generation.json are from exact arithmetic.

Run by hand (same venv as make_quality_fixture.py). Usage:
    V/bin/python scripts/reference/measure_generation_error.py MODEL.gguf [generation.json] [--f32 PATH]

Teacher-forces every case's prompt and greedy tokens through the exact reference (llama.cpp on the F32
dequantized weights, f32 KV cache) and prints, over the fixture's generated positions:
  - |Δlogit| between the fixture (llama.cpp on the quantized file) and exact, on the fixture's top-20 ids,
    raw and relative to the logit of the fixture's top-1 (softmax ignores a constant added to every logit);
  - the fixture's top-2 logit margin at the positions where exact's argmax is a different token.
These choose ReferenceTests' tolerances: an implementation as close to exact as llama.cpp is can differ
from llama.cpp by about twice llama.cpp's own error, and greedy outputs can part where margins are that small.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_quality_fixture as mq  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("fixture", nargs="?", default=os.path.join(HERE, "../../Tests/ModelsTests/Fixtures/generation.json"))
    ap.add_argument("--f32")
    args = ap.parse_args()
    import json
    fx = json.load(open(args.fixture))
    f32 = args.f32 or "/tmp/swiftlet-reference.f32.gguf"
    if not os.path.exists(f32):
        mq.make_f32(args.model, f32)
    llm = mq.load(f32, 2, f32_cache=True)
    deltas, rel, flip_margins, margins = [], [], [], []
    for c in fx["cases"]:
        tokens = c["prompt_tokens"] + c["generated"]
        llm.reset()
        llm.eval(tokens)
        scores = np.array(llm.scores[:len(tokens)], dtype=np.float64)
        base = len(c["prompt_tokens"]) - 1
        for i, pos in enumerate(c["positions"]):
            row = scores[base + i]
            ids, ref = np.array(pos["top_ids"]), np.array(pos["top_logits"], dtype=np.float64)
            deltas.append(np.abs(row[ids] - ref).max())
            # Relative to each side's logit of the reference's top-1: free of the softmax's additive constant.
            rel.append(np.abs((row[ids] - row[ids[0]]) - (ref - ref[0])).max())
            margins.append(ref[0] - ref[1])
            if int(row.argmax()) != ids[0]:
                flip_margins.append((ref[0] - ref[1], int(np.where(ids == row.argmax())[0][0])
                                     if row.argmax() in ids else -1))
    d = np.array(deltas)
    print(f"{len(d)} generated positions in {len(fx['cases'])} cases")
    print(f"max |Δlogit| (top-20) llama.cpp quantized vs exact: median {np.median(d):.3f}, "
          f"p99 {np.percentile(d, 99):.3f}, max {d.max():.3f}")
    print(f"positions where exact's argmax differs: {len(flip_margins)}; fixture margins there "
          f"(and exact's pick's rank in the fixture's top-20): {sorted(flip_margins)}")
    d = np.array(rel)
    print(f"max |Δ(logit - logit of top-1)| (top-20): mean {d.mean():.3f}, median {np.median(d):.3f}, "
          f"p99 {np.percentile(d, 99):.3f}, max {d.max():.3f}")
    m = np.array(margins)
    for t in (0.1, 0.25, 0.5, 1.0):
        print(f"fixture positions with top-2 margin <= {t}: {(m <= t).sum()}")


if __name__ == "__main__":
    main()
