"""``adadpo diagnose``: how imbalanced is the plain loss on *your* pairs, under *your* model?

    adadpo diagnose --model M --dataset D [--loss dpo] [--level token] [--ref-model R] [--output-dir DIR]

For the first ``--num-pairs`` pairs of the split it runs the model (no gradients) over prompt + chosen and
prompt + rejected, sums the response tokens' log-probs per side (``A_w``, ``A_l``, lengths ``T_w``, ``T_l``)
exactly as ``adadpo train`` does, and reports the plain loss's imbalance

    log rho = X_w - X_l = log(|push on the rejected side| / |pull on the chosen side|)

(:func:`adadpo.gradient_imbalance`): its distribution over pairs, the share of pairs where the rejected side
is pushed harder (``rho > 1``) and, for each ``--kappa``, the share of pairs on which AdaDPO's clip would bind
(``|log rho| > log kappa``). With ``--output-dir`` it also writes ``imbalance.json`` and a histogram
``imbalance.png``.

Without ``--ref-model`` the model is its own reference, as at the start of training: the statistic is then
the one a training run would see at step 0 (``--use-reference`` would give ``rho = 1`` and is refused).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import warnings
from typing import Any

from adadpo.cli.balance_args import add_balance_arguments
from adadpo.core.spec import LOSSES, get_family

NAME = "diagnose"
HELP = "measure the plain loss's gradient imbalance (log rho) on your data under your model"
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEFAULT_KAPPAS = (2.0, 5.0, 10.0, 100.0)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="causal LM: Hugging Face Hub id or local directory (its tokenizer too)")
    p.add_argument("--dataset", required=True, help="preference dataset: Hub id, jsonl/json/parquet/csv file or directory")
    p.add_argument("--dataset-config", default=None, help="dataset configuration name (Hub datasets)")
    p.add_argument("--split", default="train", help="split to read (default: train)")
    p.add_argument("--ref-model", default=None,
                   help="reference model (same tokenizer); default: the model is its own reference, as at step 0")
    p.add_argument("--loss", default="dpo", choices=list(LOSSES), help="loss whose imbalance is measured (default: dpo)")
    add_balance_arguments(p, only=("level", "use_reference"))  # the statistic log rho is measured with
    p.add_argument("--kappa", type=float, nargs="+", default=list(DEFAULT_KAPPAS), metavar="K",
                   help="clips whose binding share is reported (default: 2 5 10 100)")
    p.add_argument("--num-pairs", type=int, default=512, help="use the first N pairs of the split (default: 512)")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per forward pass (default: 8)")
    p.add_argument("--max-length", type=int, default=1024, help="truncate prompt + response to this many tokens")
    p.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype the model(s) are loaded in (default: float32)")
    p.add_argument("--output-dir", default=None, help="write imbalance.json and imbalance.png here")


# ----------------------------------------------------------------------------------------------- checks


def _check_args(args: argparse.Namespace) -> None:
    """Refuse settings that make no sense before anything is loaded."""
    family = get_family(args.loss)
    if args.num_pairs < 1:
        raise ValueError(f"--num-pairs must be >= 1, got {args.num_pairs}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_length < 2:
        raise ValueError(f"--max-length must be >= 2 (a prompt token and a response token), got {args.max_length}")
    bad = [k for k in args.kappa if not k >= 1]
    if bad:
        raise ValueError(f"--kappa values must all be >= 1 (a clip ratio), got {bad[0]:g}")
    if not family.needs_reference:
        if args.ref_model is not None:
            raise ValueError(f"--ref-model was given, but loss {args.loss!r} is reference-free; drop it or use dpo, rdpo or ipo")
        if args.use_reference:
            raise ValueError(f"--use-reference needs a reference-based loss (dpo, rdpo, ipo), but loss is {args.loss!r}")
    elif args.use_reference and args.ref_model is None:
        raise ValueError(
            "--use-reference needs --ref-model: without one the model is its own reference, so pi / pi_ref = 1 for "
            "every pair and log rho would be 0 everywhere; pass --ref-model or drop --use-reference"
        )


# ------------------------------------------------------------------------------------------- log-probs


def _load_model(name: str, dtype: str, what: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    except (OSError, ValueError) as err:  # missing path, offline hub, not a causal LM
        raise ValueError(f"could not load {what} {name!r} ({type(err).__name__}: {err})") from err
    return model.eval()


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load the tokenizer of --model {name!r} ({type(err).__name__}: {err})") from err


def pair_logps(
    model: Any, tokenizer: Any, dataset: Any, *, ref_model: Any = None, batch_size: int = 8, max_length: int = 1024
) -> Any:
    """The :class:`adadpo.PairLogps` of every pair of ``dataset`` under ``model`` (reference sums: ``ref_model``'s),
    no gradients, float64 on the CPU.

    Tokenisation, truncation and collation are ``AdaDPOTrainer``'s (TRL's) and the sums come from
    :func:`adadpo.trl.batch_pair_logps`, the trainer's own path, so they are the ones a training run on the same
    data would start from; pairs TRL drops (prompt alone reaching ``max_length``) are dropped here too.
    """
    import torch
    from datasets.utils import logging as datasets_logging
    from tqdm.auto import tqdm
    from trl.trainer.utils import add_fused_lm_head

    from adadpo.core.pairs import PairLogps
    from adadpo.trl import AdaDPOConfig, AdaDPOTrainer, batch_pair_logps

    with tempfile.TemporaryDirectory(prefix="adadpo-diagnose-") as tmp:
        # The trainer serves only to prepare the data (and the model, as training would); nothing is trained. A
        # reference-free loss (simpo) keeps it from loading a reference copy of the model; the loss the user asked
        # about is applied afterwards, to the sums computed here.
        with warnings.catch_warnings():  # DPOConfig's own defaults trigger deprecation notices irrelevant here
            warnings.simplefilter("ignore", FutureWarning)
            config = AdaDPOConfig(output_dir=tmp, loss="simpo", beta=2.0, report_to="none", max_length=max_length,
                                  bf16=False, disable_tqdm=True)
        bars_were_on = datasets_logging.is_progress_bar_enabled()
        datasets_logging.disable_progress_bar()  # one bar (ours) rather than four dataset.map ones
        try:
            trainer = AdaDPOTrainer(model, args=config, train_dataset=dataset, processing_class=tokenizer)
        finally:
            if bars_were_on:
                datasets_logging.enable_progress_bar()
    prepared = trainer.train_dataset
    policy = trainer.model.eval()
    device = trainer.accelerator.device
    if ref_model is not None:
        add_fused_lm_head(ref_model)  # for a model the chunked head cannot serve (the trainer's fallback)
        ref_model.to(device).eval()

    parts = []
    with tqdm(total=len(prepared), desc="adadpo diagnose", unit="pair") as bar:
        for start in range(0, len(prepared), batch_size):
            rows = [prepared[i] for i in range(start, min(start + batch_size, len(prepared)))]
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in trainer.data_collator(rows).items()}
            parts.append(batch_pair_logps(policy, batch, ref_model=ref_model))
            bar.update(len(rows))
    pairs = PairLogps.cat(parts)
    return PairLogps(**{k: v.to("cpu", torch.float64) for k, v in pairs.tensors().items()})


# -------------------------------------------------------------------------------------------- report


def imbalance(loss: str, pairs: Any, level: str, use_reference: bool, kappas: tuple[float, ...]) -> Any:
    """:func:`adadpo.gradient_imbalance` of ``loss`` on the pairs. A reference-based loss with no reference
    model takes the policy as its own reference (the statistic without ``use_reference`` ignores it); a
    reference-free one ignores the reference sums."""
    from adadpo.core.diagnostics import gradient_imbalance

    if get_family(loss).needs_reference and not pairs.has_reference:
        pairs = pairs.with_reference(pairs.chosen_logps, pairs.rejected_logps)
    elif not get_family(loss).needs_reference and pairs.has_reference:
        pairs = type(pairs)(pairs.chosen_logps, pairs.rejected_logps, pairs.chosen_lengths, pairs.rejected_lengths)
    return gradient_imbalance(loss, pairs, level=level, use_reference=use_reference, kappas=kappas)


def _reference_note(args: argparse.Namespace) -> str:
    if not get_family(args.loss).needs_reference:
        return f"not used ({args.loss} is reference-free)"
    if args.ref_model is None:
        return "none given: the model is its own reference (the start of training, pi / pi_ref = 1)"
    if args.use_reference:
        return f"{args.ref_model} (log rho measured on the ratios pi / pi_ref)"
    return f"{args.ref_model} (its sums are saved, but without --use-reference log rho does not depend on them)"


def describe(report: Any, args: argparse.Namespace, requested: int) -> str:
    """The text printed by the command: settings, ``report.to_text()`` and the result in words."""
    used = report.num_pairs
    pairs = f"{used} pairs" + ("" if used == requested else
                               f" ({requested - used} of the first {requested} dropped: prompt reaches --max-length)")
    dataset = args.dataset + (f" [{args.dataset_config}]" if args.dataset_config else "")
    head = [
        "adadpo diagnose",
        f"  model:     {args.model}",
        f"  reference: {_reference_note(args)}",
        f"  dataset:   {dataset}, split {args.split!r}, {pairs}",
        f"  loss:      {args.loss}, level {args.level}" + (", on pi / pi_ref" if args.use_reference else ""),
    ]
    clips = ", ".join(f"kappa={k:g} on {100 * v:.1f}%" for k, v in report.clip_fractions.items())
    words = [
        (f"In {100 * report.rejected_dominant:.1f}% of the pairs the plain {args.loss} loss pushes the rejected "
         "response down harder than it pulls the chosen one up (rho > 1)."),
        f"AdaDPO's clip would bind (|log rho| > log kappa) with {clips} of the pairs.",
    ]
    return "\n\n".join(["\n".join(head), report.to_text(), "\n".join(words)])


def write_outputs(directory: str, report: Any, args: argparse.Namespace, pairs: Any, requested: int) -> tuple[str, str]:
    """Write ``imbalance.json`` (settings, summary, per-pair values) and ``imbalance.png`` (histogram of log rho
    with lines at 0 and at ``+-log kappa``); return their paths."""
    os.makedirs(directory, exist_ok=True)
    settings = {
        "model": args.model, "ref_model": args.ref_model, "dataset": args.dataset, "dataset_config": args.dataset_config,
        "split": args.split, "loss": args.loss, "level": args.level, "use_reference": args.use_reference,
        "kappas": [float(k) for k in args.kappa], "num_pairs_requested": requested, "batch_size": args.batch_size,
        "max_length": args.max_length, "dtype": args.dtype, "reference": _reference_note(args),
    }
    per_pair = {"log_rho": report.log_rho.tolist()}
    for name, values in pairs.tensors().items():  # the policy's sums and lengths, and the reference's sums if any
        per_pair[name] = [int(t) for t in values.tolist()] if name.endswith("lengths") else values.tolist()
    json_path = os.path.join(directory, "imbalance.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump({"settings": settings, **report.summary(), "per_pair": per_pair}, f, indent=1)
    png_path = os.path.join(directory, "imbalance.png")
    _plot(report, args, png_path)
    return json_path, png_path


def _plot(report: Any, args: argparse.Namespace, path: str) -> None:
    from adadpo.oracle.plotting import save

    save(imbalance_figure(report, args), path, dpi=120)


def imbalance_figure(report: Any, args: argparse.Namespace):
    """The histogram of ``report.log_rho`` with lines at 0 and ``+-log kappa`` per kappa; the legend sits below
    the axes so it covers no line. ``args``: ``loss``, ``level``, ``use_reference``, ``dataset``, ``split``."""
    from adadpo.oracle.plotting import figure, legend_outside, pyplot

    values = report.log_rho.numpy()
    fig, ax = figure(figsize=(8, 5))
    ax.hist(values, bins=max(10, min(60, 2 * int(math.sqrt(values.size)))), color="tab:blue", alpha=0.75,
            label=f"log rho of {report.num_pairs} pairs")
    ax.axvline(0.0, color="black", linewidth=1.2, label="0: balanced")
    colors = pyplot().rcParams["axes.prop_cycle"].by_key()["color"][1:]
    for i, (kappa, share) in enumerate(report.clip_fractions.items()):
        color = colors[i % len(colors)]
        label = f"±log {kappa:g}: clip binds on {100 * share:.1f}%"
        ax.axvline(math.log(kappa), color=color, linestyle="--", linewidth=1, label=label)
        ax.axvline(-math.log(kappa), color=color, linestyle="--", linewidth=1)
    ref = ", pi / pi_ref" if args.use_reference else ""
    ax.set_title(f"Gradient imbalance of plain {args.loss} ({args.level} level{ref}): {report.num_pairs} pairs "
                 f"of {os.path.basename(args.dataset.rstrip('/'))} [{args.split}]\n"
                 f"rho > 1 (rejected pushed harder) in {100 * report.rejected_dominant:.1f}% of pairs", fontsize=10)
    ax.set_xlabel("log rho = log(|push on rejected| / |pull on chosen|)")
    ax.set_ylabel("pairs")
    legend_outside(fig, ax, "lower center", ncols=min(3, 2 + len(report.clip_fractions)))
    return fig


# ----------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    from adadpo.trl.data import check_preference_dataset
    from adadpo.trl.loading import load_preference_dataset, select_split

    _check_args(args)
    data = select_split(load_preference_dataset(args.dataset, args.dataset_config), args.split, "--split")
    requested = min(args.num_pairs, len(data))
    subset = data.select(range(requested))
    check_preference_dataset(subset, f"{args.split!r} split of the")  # before loading any model

    tokenizer = _load_tokenizer(args.model)
    model = _load_model(args.model, args.dtype, "--model")
    ref_model = _load_model(args.ref_model, args.dtype, "--ref-model") if args.ref_model else None
    if ref_model is not None and ref_model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ValueError(
            f"--ref-model {args.ref_model!r} has {ref_model.get_input_embeddings().num_embeddings} token embeddings but "
            f"the tokenizer of --model has {len(tokenizer)} tokens; the two models must share a tokenizer"
        )
    pairs = pair_logps(model, tokenizer, subset, ref_model=ref_model, batch_size=args.batch_size,
                       max_length=args.max_length)
    report = imbalance(args.loss, pairs, args.level, args.use_reference, tuple(args.kappa))
    print(describe(report, args, requested))
    if args.output_dir:
        json_path, png_path = write_outputs(args.output_dir, report, args, pairs, requested)
        print(f"\nwrote {json_path} and {png_path}")
    return 0
