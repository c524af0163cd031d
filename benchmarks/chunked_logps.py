"""Peak memory and time of the LM head + DPO loss step: token-chunked log-probs vs full logits and others.

    python benchmarks/chunked_logps.py [--lengths 256 1024] [--repeats 3 1] [--methods ...]

The step: final hidden states ``[2B, T, H]`` (B = 8 pairs, H = 256, a leaf standing for the backbone's
output) and an LM head weight ``[V, H]`` (V = 32000) -> summed response log-probs per sequence -> DPO
loss (beta 0.1, reference log-probs precomputed) -> backward to the hidden states and the weight. fp32,
CPU, one thread. The first quarter of each sequence is prompt (label -100), the rest is scored.

Methods (the same loss value, checked):
  full               logits = hidden @ W.T, log_softmax, gather (what a plain implementation does)
  chunked            adadpo's linear_sequence_logps (token chunks of ~32 MiB of logits, recomputed in backward)
  chunked+metrics    the same plus entropy, mean logit and top-1 per token (what AdaDPOTrainer logs)
  trl_fused          TRL 1.16's ChunkedLogProbFunction as its fused LM head calls it on CPU (log-probs only)
  trl_fused+metrics  the same with the outputs DPOTrainer requests (entropy, mean_logits, is_top1)
  liger              Liger-Kernel's LigerFusedLinearDPOLoss, eager (compiled=False), if installed
  liger_compiled     the same with torch.compile (compiled=True; compiled in a warm-up step first)

Each (method, T) runs in a fresh process: a warm-up step (same shape for liger_compiled, a 32-token one
otherwise), then the measured step. Peak memory = the process's high-water RSS during the measured step
minus its RSS just before it (the high-water mark is reset first; freed heap is returned to the OS, and
glibc's mmap threshold is fixed at 1 MiB so that freed tensors leave RSS at once).
Repeats alternate the method order; the table gives medians and ratios to ``full`` at the same T.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

METHODS = ("full", "chunked", "chunked+metrics", "trl_fused", "trl_fused+metrics", "liger", "liger_compiled")
BETA = 0.1


def liger_available() -> str | None:
    """``None`` if Liger-Kernel's chunked DPO loss imports, else why not."""
    try:
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss  # noqa: F401
    except Exception as e:  # noqa: BLE001 -- any import failure means "not available"
        return f"{type(e).__name__}: {e}"
    return None


def make_inputs(pairs: int, T: int, hidden: int, vocab: int, prompt_frac: float, seed: int = 0) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2 * pairs, T, hidden, generator=g).requires_grad_(True)
    w = (0.02 * torch.randn(vocab, hidden, generator=g)).requires_grad_(True)
    labels = torch.randint(0, vocab, (2 * pairs, T), generator=g)
    labels[:, : int(T * prompt_frac)] = -100
    return {"hidden": h, "weight": w, "labels": labels}


def _dpo(sums: Any, lengths: Any) -> Any:
    """DPO loss (mean over pairs) of ``[2B]`` sums (chosen rows first) with reference log-probs 0 (precomputed;
    Liger without a reference agrees), through the pair type and a loss resolved once, as the trainer does."""
    import adadpo

    pairs = adadpo.SequenceLogps(sums, lengths).pairs(ref_logps=sums.detach() * 0)
    return adadpo.preference_loss(_dpo_spec(), pairs).loss


@functools.cache
def _dpo_spec() -> Any:
    import adadpo

    return adadpo.LossSpec("dpo", beta=BETA)


def _hidden_grad_bytes(args: Any, T: int) -> int:
    """Bytes of the float32 gradient of the hidden states ``[2B, T, H]``, which every method returns."""
    return 2 * args.pairs * T * args.hidden * 4


def step_fn(method: str, x: dict[str, Any]) -> Any:
    """A closure running one step of ``method`` on inputs ``x`` and returning the loss."""
    import torch
    import torch.nn.functional as F

    h, w, labels = x["hidden"], x["weight"], x["labels"]
    y = labels[:, 1:]
    keep = y != -100
    lengths = keep.sum(-1)

    def full() -> Any:
        logps = torch.log_softmax(F.linear(h, w)[:, :-1].float(), dim=-1)
        token = logps.gather(-1, y.clamp(min=0)[..., None]).squeeze(-1)
        return _dpo((token * keep).sum(-1), lengths)

    def chunked(stats: bool) -> Any:
        from adadpo.core.logps import linear_token_logps

        tokens = linear_token_logps(h, w, labels, stats=stats)
        if stats:  # reduce the metrics like the trainer does
            _ = (tokens.entropy.sum().item(), tokens.mean_logits.sum().item(), tokens.is_top1.sum().item())
        return _dpo(tokens.per_sequence().logps, lengths)

    def trl_fused(outputs: tuple[str, ...]) -> Any:
        from trl.kernels import ChunkedLogProbFunction
        from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE

        # what trl.trainer.utils.add_fused_lm_head does on a device without Triton: every position is scored
        flat = h[:, :-1].reshape(-1, h.shape[-1])
        out = ChunkedLogProbFunction.apply(flat, w, None, y.clamp(min=0).reshape(-1), 1.0, _CHUNKED_LOGPROB_CHUNK_SIZE,
                                           None, 1.0, outputs)
        per_token = [None if t is None else t.view(keep.shape).masked_fill(~keep, 0) for t in out]
        if "entropy" in outputs:
            _ = (per_token[1].sum().item(), per_token[3].sum().item(), per_token[4].sum().item())
        return _dpo(per_token[0].sum(-1), lengths)

    def liger(compiled: bool) -> Any:
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        loss_fn = LigerFusedLinearDPOLoss(beta=BETA, compiled=compiled, use_ref_model=False)
        out = loss_fn(w, h[:, :-1], y)
        return out[0] if isinstance(out, tuple) else out

    steps = {
        "full": full,
        "chunked": lambda: chunked(False),
        "chunked+metrics": lambda: chunked(True),
        "trl_fused": lambda: trl_fused(("log_probs",)),
        "trl_fused+metrics": lambda: trl_fused(("log_probs", "entropy", "mean_logits", "is_top1")),
        "liger": lambda: liger(False),
        "liger_compiled": lambda: liger(True),
    }

    def run() -> float:
        h.grad = w.grad = None
        loss = steps[method]()
        loss.backward()
        return float(loss.detach())

    return run


def worker(args: argparse.Namespace) -> None:
    C.set_threads(args.threads)
    x = make_inputs(args.pairs, args.T, args.hidden, args.vocab, args.prompt_frac)
    warm = x if args.method == "liger_compiled" else make_inputs(args.pairs, 32, args.hidden, args.vocab, args.prompt_frac)
    step_fn(args.method, warm)()
    del warm
    run = step_fn(args.method, x)
    holder: dict[str, float] = {}
    peak, seconds = C.peak_rss_of(lambda: holder.setdefault("loss", run()))
    print(json.dumps({"method": args.method, "T": args.T, "peak_bytes": peak, "seconds": seconds, "loss": holder["loss"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--repeats", type=int, nargs="+", default=[3, 1], help="repeats per length (last one reused)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--prompt-frac", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json-dir", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--T", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    methods = list(args.methods)
    liger_problem = liger_available()
    if liger_problem is not None:
        methods = [m for m in methods if not m.startswith("liger")]
        print(f"Liger-Kernel not available ({liger_problem}); its rows are skipped", file=sys.stderr)
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for i, T in enumerate(args.lengths):
        repeats = args.repeats[min(i, len(args.repeats) - 1)]
        results[T] = {m: [] for m in methods}
        for r in range(repeats):
            for m in C.alternating(methods, r):
                common = ["--method", m, "--T", str(T), "--pairs", str(args.pairs), "--hidden", str(args.hidden),
                          "--vocab", str(args.vocab), "--prompt-frac", str(args.prompt_frac),
                          "--threads", str(args.threads)]
                try:
                    results[T][m].append(C.run_worker(Path(__file__), common))
                except RuntimeError as e:
                    print(f"{m} at T={T} failed: {str(e)[-500:]}", file=sys.stderr)
                print(f"T={T} repeat {r + 1}/{repeats} {m} done", file=sys.stderr)

    rows, payload = [], {"machine": None, "settings": vars(args) | {"json_dir": None}, "rows": []}
    for T, per in results.items():
        base_mem = C.median([r["peak_bytes"] for r in per.get("full", [])]) if per.get("full") else None
        base_time = C.median([r["seconds"] for r in per.get("full", [])]) if per.get("full") else None
        base_loss = per["full"][0]["loss"] if per.get("full") else None
        for m, runs in per.items():
            if not runs:
                rows.append([T, m, "failed", "", "", "", ""])
                continue
            mem, sec = C.median([r["peak_bytes"] for r in runs]), C.median([r["seconds"] for r in runs])
            rel_diff = None if base_loss is None else abs(runs[0]["loss"] - base_loss) / max(1.0, abs(base_loss))
            row = {"T": T, "method": m, "peak_mib": mem / 2**20, "seconds": sec, "repeats": len(runs),
                   "mem_ratio": mem / base_mem if base_mem else None, "time_ratio": sec / base_time if base_time else None,
                   "loss": runs[0]["loss"], "loss_matches_full": rel_diff is None or rel_diff <= 1e-4,
                   "loss_rel_diff": rel_diff}
            payload["rows"].append(row)
            rows.append([T, m, f"{row['peak_mib']:.0f}", f"{row['mem_ratio']:.3f}" if base_mem else "",
                         f"{sec:.2f}", f"{row['time_ratio']:.2f}" if base_time else "", len(runs)])
    growth = []
    if len(results) >= 2:
        t0, t1 = min(results), max(results)
        for m in methods:
            a, b = results[t0].get(m), results[t1].get(m)
            if a and b:
                ga = C.median([r["peak_bytes"] for r in a])
                gb = C.median([r["peak_bytes"] for r in b])
                # the gradient of the [2B, T, H] hidden states (float32) is returned by every method, full included
                # (the backbone's backward needs it); without it, what the head itself holds
                ha, hb = (ga - _hidden_grad_bytes(args, t0)), (gb - _hidden_grad_bytes(args, t1))
                growth.append([m, f"{ga / 2**20:.0f}", f"{gb / 2**20:.0f}", f"{gb / ga:.2f}x", f"{hb / ha:.2f}x"])
                payload.setdefault("growth", {})[m] = gb / ga
                payload.setdefault("growth_without_hidden_grad", {})[m] = hb / ha
    C.set_threads(args.threads)
    payload["machine"] = C.machine()
    payload["liger"] = liger_problem or "available"
    print(f"\nLM head + DPO loss step: {args.pairs} pairs, hidden {args.hidden}, V={args.vocab}, fp32, prompt fraction "
          f"{args.prompt_frac}, {args.threads} thread(s)\n{payload['machine']}\n")
    print(C.table(["T", "method", "peak MiB", "vs full", "seconds", "vs full", "runs"], rows))
    if growth:
        print(f"\nPeak growth from T={min(results)} to T={max(results)}:\n")
        print(C.table(["method", f"MiB at {min(results)}", f"MiB at {max(results)}", "growth",
                       "growth without the [2B, T, H] input gradient"], growth))
    bad = [r for r in payload["rows"] if not r["loss_matches_full"]]
    if bad:
        print("\nWARNING: loss differs from the full path for " + ", ".join(
            f"{r['method']} (T={r['T']}: {r['loss_rel_diff']:.1e} relative)" for r in bad))
    C.write_result("chunked_logps", payload, args.json_dir)


if __name__ == "__main__":
    main()
