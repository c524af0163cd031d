"""What sampling longer SmolLM2 answers costs, with ``model.generate`` per batch and with the stream sampler
(issue 31's "Answers that end" and "Cost").

    python benchmarks/smollm2_sampling.py [--prompts 96] [--n 4] [--caps 48 192] [--repeats 1] [--threads 1]

The SmolLM2 world's evaluation samples ``n`` answers to each of its held-out prompts with
``adadpo.bench.worlds.smollm2.policy.sample`` (batches of 64 answers). This script samples the first ``--prompts``
held-out prompts of the shipped world's settings at each cap, with both engines of ``sample``:

* ``generate``: one ``model.generate`` per batch of 64 (the world before issue 31): a batch runs until its
  longest answer ends, and every step computes all 64 rows, ended or not;
* ``stream``: :func:`adadpo.bench.sampling.stream_sample`: at most 64 rows decode together, a row leaves as it
  ends and the next batch's rows take its place.

and for two models: the untrained SmolLM2-135M-Instruct, and the same model made to ramble by lowering its EOS
logit by ``--ramble`` nats in every position (a forward hook on the LM head; every row is affected alike, which
is how a trained model that lost the habit of stopping behaves: few rows end, most run to the cap).

Each repeat runs both engines per (model, cap), the order alternating; the ratio stream / generate is taken
within the repeat. Wall times on a shared machine are noise; the ratios are what to read. Beside them: the
share of answers that ended, the decode steps each engine ran and the share of computed rows that had already
ended (``generate``: from the answers' lengths; ``stream``: counted), and where the stream's time went.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: F401  (offline environment variables)

BATCH = 64
ENDED_BY = (48, 96, 128, 160, 192, 256)


def load(threads: int):
    """The shipped world's held-out chat prompts and the untrained model with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from adadpo.bench.cache import default_cache_dir
    from adadpo.bench.worlds.smollm2.data import LMWorldConfig
    from adadpo.bench.worlds.smollm2.model import prepare_model
    from adadpo.bench.worlds.smollm2.policy import chat_prompt
    from adadpo.bench.worlds.smollm2.tasks import make_tasks

    torch.set_num_threads(threads)
    config = LMWorldConfig()
    path = prepare_model(config.model, default_cache_dir())
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    _, held = make_tasks(config.n_train_prompts, config.n_eval_prompts, config.seed)
    return model, tokenizer, [chat_prompt(tokenizer, config.system, t.text) for t in held], config


def ramble(model, eos: int, bias: float):
    """Lower the EOS logit of every position by ``bias`` nats (the returned handle removes the hook)."""

    def hook(_module, _inputs, out):
        out[..., eos] -= bias
        return out

    return model.get_output_embeddings().register_forward_hook(hook)


def generate_counts(tokens: list[list[int]], ended: list[bool]) -> dict:
    """Decode steps and computed rows of ``generate`` per batch of :data:`BATCH`, from the answers: a batch runs
    one step per token of its longest answer (EOS included) and computes every row at every step."""
    steps = rows = useful = 0
    for s in range(0, len(tokens), BATCH):
        lens = [len(t) + e for t, e in zip(tokens[s : s + BATCH], ended[s : s + BATCH])]
        steps += max(lens)
        rows += max(lens) * len(lens)
        useful += sum(lens)
    return {"steps": steps, "row_steps": rows, "dead_row_steps": rows - useful}


def run(model, tokenizer, prompts, n: int, cap: int, engine: str, temperature: float, seed: int) -> dict:
    """One ``sample`` call: seconds, answers' lengths and ended flags, and the engine's counts."""
    from adadpo.bench import sampling
    from adadpo.bench.worlds.smollm2 import policy

    stats: dict = {}
    original = sampling.stream_sample

    def counted(*args, **kwargs):
        return original(*args, **kwargs, stats=stats)

    policy.stream_sample = counted
    try:
        start = time.perf_counter()
        s = policy.sample(model, tokenizer, prompts, n=n, max_new_tokens=cap, temperature=temperature, seed=seed,
                   batch_size=BATCH, engine=engine)
        seconds = time.perf_counter() - start
    finally:
        policy.stream_sample = original
    counts = stats if engine == "stream" else generate_counts(s.tokens, s.ended)
    return {"seconds": seconds, "lengths": [len(t) for t in s.tokens], "ended": s.ended, **counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=96, help="held-out prompts (the world's evaluation: 96)")
    parser.add_argument("--n", type=int, default=4, help="answers per prompt (the world's evaluation: 4)")
    parser.add_argument("--caps", type=int, nargs="+", default=[48, 192])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ramble", type=float, default=3.0, help="nats taken off the rambling model's EOS logit")
    parser.add_argument("--models", nargs="+", default=["untrained", "rambling"])
    parser.add_argument("--engines", nargs="+", default=["generate", "stream"])
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()

    model, tokenizer, prompts, config = load(args.threads)
    prompts = prompts[: args.prompts]
    runs = []
    for r in range(args.repeats):
        for kind in args.models:
            hook = ramble(model, tokenizer.eos_token_id, args.ramble) if kind == "rambling" else None
            try:
                for cap in args.caps:
                    order = args.engines if r % 2 == 0 else args.engines[::-1]
                    for engine in order:
                        out = run(model, tokenizer, prompts, args.n, cap, engine, config.temperature, config.seed)
                        out.update(repeat=r, model=kind, cap=cap, engine=engine)
                        runs.append(out)
                        print(f"repeat {r + 1}: {kind} cap {cap} {engine}: {out['seconds']:.1f} s, ended "
                              f"{statistics.mean(out['ended']):.2f}, steps {out['steps']}", flush=True)
            finally:
                if hook is not None:
                    hook.remove()
    if args.json:
        args.json.write_text(json.dumps(runs))
    report(runs, args)


def report(runs: list[dict], args) -> None:
    """The markdown tables: ratios and counts per (model, cap), and the untrained model's ended shares."""
    answers = args.prompts * args.n
    print(f"\nSmolLM2-135M-Instruct, {answers} answers ({args.prompts} prompts x {args.n}), batches of {BATCH}, "
          f"{args.threads} thread(s), {args.repeats} repeat(s); rambling = EOS logit - {args.ramble:g}\n")
    print("| model | cap | stream / generate seconds | ended | decode steps (gen / stream) | "
          "ended rows computed (gen / stream) | stream: prefill / decode / rebuild / draw |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({(x["model"], x["cap"]) for x in runs}, key=lambda k: (args.models.index(k[0]), k[1]))
    for kind, cap in keys:
        by = {e: [x for x in runs if (x["model"], x["cap"], x["engine"]) == (kind, cap, e)]
              for e in ("generate", "stream")}
        if not all(by.values()):  # one engine only: no ratio
            continue
        g, s = by["generate"], by["stream"]
        ratios = [b["seconds"] / a["seconds"] for a, b in zip(g, s)]
        spread = f" ({min(ratios):.3f}-{max(ratios):.3f})" if len(ratios) > 1 else ""
        ratio = f"{statistics.median(ratios):.3f}{spread}"
        ended = f"{statistics.mean(g[0]['ended']):.2f} / {statistics.mean(s[0]['ended']):.2f}"
        waste = lambda x: x["dead_row_steps"] / x["row_steps"]  # noqa: E731
        total = sum(s[0].get(p, 0) for p in ("prefill", "decode", "rebuild", "draw"))
        parts = " / ".join(f"{s[0].get(p, 0) / total:.0%}" for p in ("prefill", "decode", "rebuild", "draw"))
        print(f"| {kind} | {cap} | {ratio} | {ended} | {g[0]['steps']} / {s[0]['steps']} | "
              f"{waste(g[0]):.0%} / {waste(s[0]):.0%} | {parts} |")
    untrained = [x for x in runs if x["model"] == "untrained" and x["engine"] == "stream"]
    if untrained:
        top = max(untrained, key=lambda x: x["cap"])
        pairs = list(zip(top["lengths"], top["ended"]))
        shares = {c: sum(e and n < c for n, e in pairs) / len(pairs) for c in ENDED_BY if c <= top["cap"]}
        print(f"\nUntrained answers ended with EOS before c tokens ({len(pairs)} answers, cap {top['cap']}): "
              + ", ".join(f"{c}: {v:.3f}" for c, v in shares.items()))


if __name__ == "__main__":
    main()
