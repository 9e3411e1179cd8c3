#!/usr/bin/env python3
"""Markdown table from results.json + the fixture's llama.cpp run (same metric definitions)."""
import json, sys
import numpy as np
fx = json.load(open(sys.argv[1])); res = json.load(open(sys.argv[2]))
ps = fx["passages"]; names = [p["name"] for p in ps]
# llama.cpp per passage, recomputed from the fixture
lc = {}
for p in ps:
    e, q = np.array(p["exact"]["nll"]), np.array(p["llamacpp"]["nll"])
    lc[p["name"]] = dict(n=len(e), dnll=float(np.abs(q - e).sum()),
                         agree=int((np.array(p["llamacpp"]["top1"]) == np.array(p["exact"]["top1"])).sum()), kl=None)
order = ["A","B","C","C1","D","E","F","G","H","K","O","P","L"]
rows = [(v, res[v]) for v in order if v in res] + [(v, r) for v, r in res.items() if v not in order]
rows = rows + [("llama.cpp", {"desc": "fixture's llama.cpp run (Q8_0/Q8_1 acts, f16 KV)", "passages": lc})]
short = [n.split("-", 1)[1] for n in names]
print("| variant | description | mean abs dNLL (nats) | top-1 agree | approx KL | " + " | ".join(f"dNLL {s}" for s in short) + " | non-English top-1 |")
print("|---|---|---|---|---|" + "---|" * len(short) + "---|")
for v, r in rows:
    P = r["passages"]
    if not all(n in P for n in names):
        continue
    n = sum(P[x]["n"] for x in names)
    d = sum(P[x]["dnll"] for x in names) / n
    ag = sum(P[x]["agree"] for x in names) / n
    kl = "—" if P[names[0]]["kl"] is None else f"{sum(P[x]['kl'] for x in names) / n:.5f}"
    per = " | ".join(f"{P[x]['dnll'] / P[x]['n']:.4f}" for x in names)
    lang = P["05-languages"]
    print(f"| {v} | {r['desc']} | {d:.4f} | {100 * ag:.2f}% | {kl} | {per} | {100 * lang['agree'] / lang['n']:.2f}% |")
print(f"\nPositions: {n} over {len(names)} passages (all of the fixture). Fixture summary for llama.cpp: "
      f"{fx['summary']['llamacpp']['mean_abs_delta_nll']:.4f} nats, {100 * fx['summary']['llamacpp']['top1_agreement']:.2f}%, "
      f"KL {fx['summary']['llamacpp']['approximate_kl']:.5f}.")
