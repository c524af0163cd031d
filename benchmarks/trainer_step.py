"""Step time (and, on a real model, peak memory) of AdaDPOTrainer vs stock trl.DPOTrainer on the same model,
data and batch.

    python benchmarks/trainer_step.py [--repeats 7] [--steps 12] [--configs tiny head]
    python benchmarks/trainer_step.py --configs smollm2     # the real model: ~8 minutes

Configurations: ``tiny`` (Llama, hidden 64, 2 layers, vocabulary of the 48-token word-level tokenizer: the
step is mostly Python and small kernels) and ``head`` (hidden 256, 2 layers, V = 32000: the LM head
dominates), both with word-level pairs of a few words; batch 8 pairs, one thread. When asked, ``smollm2``:
SmolLM2-135M-Instruct (134.5M parameters, 30 layers, hidden 576, V = 49152, tied embeddings) as
``adadpo.bench.worlds.smollm2.model.prepare_model("smollm2-gguf")`` returns it from the local cache (``--model-dir`` to
load another directory), its own tokenizer and ChatML template over conversational pairs (a user turn of
8-16 words after the template's default system line, answers of 20-55 words), batch 4 pairs, one thread,
3 repeats x 2 steps after one warm-up step. All: live reference model (loss ``dpo``, beta 0.1), fp32.

Methods: stock ``DPOTrainer``; ``AdaDPOTrainer`` plain and balanced DPO with the default log-prob backend
(``chunked``); and plain DPO with ``logps_backend="trl_fused"`` (TRL's own LM head, so that row isolates
the cost of the trainer override from the cost of the backend). Every trainer is built once from the same
saved model; a step is ``trainer.training_step`` (forward, loss, backward) on one fixed batch. Each repeat
runs ``--steps`` steps of every method, the order alternating between repeats; the ratio to stock is taken
within each repeat (median step of the method / median step of stock), and the table gives the median
ratio over repeats.

Peak memory (``--memory``; on by default for ``smollm2``): each method in a fresh process that builds only
its own trainer, runs a warm-up step, frees the gradients and runs one measured step; peak = the high-water
RSS during that step minus the RSS just before it (so it includes the parameter gradients the step
allocates, the same for every method), as ``chunked_logps.py`` measures it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

CONFIGS = C.CONFIGS
STOCK = "DPOTrainer (stock, TRL fused head)"


METHODS = (STOCK, "AdaDPOTrainer dpo plain (chunked)", "AdaDPOTrainer dpo balanced (chunked)",
           "AdaDPOTrainer dpo plain (trl_fused)")


def build(model_dir: Path, out: Path, data: Any, tokenizer: Any, train_args: dict[str, Any],
          methods: tuple[str, ...] = METHODS) -> dict[str, Any]:
    """A trainer per method, each built from ``model_dir`` (policy and live reference)."""
    from trl import DPOConfig, DPOTrainer

    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer

    def ada(name: str, **kw: Any) -> Any:
        return lambda: AdaDPOTrainer(str(model_dir), args=AdaDPOConfig(str(out / name), **train_args, **kw),
                                     train_dataset=data, processing_class=tokenizer)

    makers = {
        STOCK: lambda: DPOTrainer(str(model_dir), args=DPOConfig(str(out / "stock"), **train_args),
                                  train_dataset=data, processing_class=tokenizer),
        METHODS[1]: ada("plain"),
        METHODS[2]: ada("balanced", balance=True),
        METHODS[3]: ada("fused", logps_backend="trl_fused"),
    }
    return {name: makers[name]() for name in methods}


def backend(trainer: Any) -> str:
    """The log-prob backend a trainer actually runs (``chunked`` may fall back to ``trl_fused``)."""
    if not hasattr(trainer, "logps_backend_for"):
        return "TRL"
    return trainer.logps_backend_for(trainer.model).name


def measure(config: str, s: Any) -> dict[str, Any]:
    """Per method: median ratio to stock over repeats, the median step time (seconds), the backend run and,
    with ``s.memory``, the peak memory of a step (MiB) and its ratio to stock."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir, tokenizer, data, about = C.load_config(config, Path(tmp), s)
        trainers = build(model_dir, Path(tmp), data, tokenizer, C.trainer_args(s))
        batch = C.fixed_batch(trainers[STOCK], s.batch)
        about += "; " + C.describe_batch(trainers[STOCK], batch)
        fns = {name: C.trainer_step_fn(t, batch) for name, t in trainers.items()}
        for fn in fns.values():
            for _ in range(s.warmup):
                fn()
        ratios: dict[str, list[float]] = {name: [] for name in fns}
        times: dict[str, list[float]] = {name: [] for name in fns}
        for r in range(s.repeats):
            medians = {}
            for name in C.alternating(list(fns), r):
                medians[name] = C.median([C.timed(fns[name]) for _ in range(s.steps)])
                trainers[name]._metrics["train"].clear()
            for name in fns:
                ratios[name].append(medians[name] / medians[STOCK])
                times[name].append(medians[name])
            print(f"{config}: repeat {r + 1}/{s.repeats} done", file=sys.stderr)
        out: dict[str, Any] = {
            name: {"ratio": C.median(ratios[name]), "ratio_min": min(ratios[name]), "ratio_max": max(ratios[name]),
                   "ms": 1000 * C.median(times[name]), "backend": backend(trainers[name])} for name in fns}
        del trainers, fns
        C.release_free_memory()
        if s.memory:
            peaks = {}
            for name in METHODS:
                worker_args = ["--configs", config, "--method", name, "--batch", str(s.batch),
                               "--threads", str(s.threads), "--tmp", tmp]
                if s.model_dir is not None:
                    worker_args += ["--model-dir", str(s.model_dir)]
                peaks[name] = C.run_worker(Path(__file__), worker_args)["peak_bytes"]
                print(f"{config}: memory of {name} done", file=sys.stderr)
            for name in METHODS:
                out[name] |= {"peak_mib": peaks[name] / 2**20, "mem_ratio": peaks[name] / peaks[STOCK]}
        out["_about"] = about
    return out


def worker(args: argparse.Namespace) -> None:
    """One method's trainer in this fresh process: warm-up step, gradients freed, one step's peak RSS."""
    import json

    s = C.config_settings(args, args.configs[0])
    C.set_threads(s.threads)
    model_dir, tokenizer, data, _ = C.load_config(s.config, Path(args.tmp) / "worker", s)
    trainer = build(model_dir, Path(args.tmp) / "worker", data, tokenizer, C.trainer_args(s), (args.method,))[args.method]
    step = C.trainer_step_fn(trainer, C.fixed_batch(trainer, s.batch))
    step()
    trainer.model.zero_grad(set_to_none=True)
    peak, seconds = C.peak_rss_of(step)
    print(json.dumps({"method": args.method, "peak_bytes": peak, "seconds": seconds}))


def options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure each method's peak memory in a fresh process (default: on for smollm2)")


def cells(v: dict[str, Any]) -> list[str]:
    row = [f"{v['ratio']:.3f}", f"{v['ratio_min']:.3f}-{v['ratio_max']:.3f}", f"{v['ms']:.1f}"]
    if "peak_mib" in v:
        row += [f"{v['peak_mib']:.0f}", f"{v['mem_ratio']:.3f}"]
    return row


def main() -> None:
    if "--worker" in sys.argv:
        parser = argparse.ArgumentParser()
        for flag in ("--worker", "--method", "--tmp", "--configs", "--batch", "--threads", "--model-dir"):
            parser.add_argument(flag, **({"action": "store_true"} if flag == "--worker" else {}))
        args = parser.parse_args()
        args.configs, args.batch, args.threads = [args.configs], int(args.batch), int(args.threads)
        worker(args)
        return
    C.run_step_benchmark(
        "trainer_step", __doc__, 12, measure,
        "Trainer step (forward + loss + backward), {args.batch} pairs, live reference, fp32, {args.threads} thread(s); "
        "{args.repeats} repeats x {args.steps} steps",
        lambda s: ["config", "method", "ratio vs stock (median)", "range over repeats", "median ms"] + (
            ["peak MiB of a step", "vs stock"] if s.memory else []),
        cells, models=True, add_arguments=options,
    )


if __name__ == "__main__":
    main()
