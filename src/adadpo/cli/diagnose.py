"""``adadpo diagnose``: how imbalanced is the plain loss on *your* pairs, under *your* model?

    adadpo diagnose --model_name_or_path M --dataset_name D [--loss dpo] [--balance_level token] [--ref_model R]
    adadpo diagnose --config run.yaml [--key value ...]       # the model, data, length and loss of a training config

For the first ``--num_pairs`` pairs of the split it runs the model (no gradients) over prompt + chosen and
prompt + rejected, sums the response tokens' log-probs per side (``A_w``, ``A_l``, lengths ``T_w``, ``T_l``)
exactly as ``adadpo train`` does, and prints the plain loss's imbalance

    log rho = X_w - X_l = log(|push on the rejected side| / |pull on the chosen side|)

(:func:`adadpo.gradient_imbalance`): its distribution over pairs, the share of pairs where the rejected side
is pushed harder (``rho > 1``) and, for each ``--balance_clip`` kappa, the share of pairs on which AdaDPO's
clip would bind (``|log rho| > log kappa``). With ``--output_dir`` it also writes ``imbalance.json`` and a
histogram, ``imbalance.png``.

``--config`` reads an ``adadpo train`` YAML: its ``model_name_or_path``, ``dataset_name``, ``dataset_config``,
``dataset_train_split``, ``max_length``, ``dtype``, ``per_device_eval_batch_size``, ``loss``, ``balance_level``,
``balance_use_reference`` and ``balance_clip`` (the other keys are training's); options on the command line
override it. Options are spelt as ``adadpo train`` spells them.

Without ``--ref_model`` the model is its own reference, as at the start of training: the statistic is then
the one a training run would see at step 0 (``--balance_use_reference`` would give ``rho = 1`` and is refused).
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
EXTRA = "trainer"
DTYPES = ("float32", "bfloat16", "float16", "auto")
DEFAULT_KAPPAS = (2.0, 5.0, 10.0, 100.0)
#: Each option's default, applied after the command line and the ``--config`` file (both override it).
DEFAULTS = {
    "model_name_or_path": None, "dataset_name": None, "dataset_config": None, "dataset_train_split": "train",
    "ref_model": None, "loss": "dpo", "balance_level": "token", "balance_use_reference": False,
    "balance_clip": list(DEFAULT_KAPPAS), "num_pairs": 512, "per_device_eval_batch_size": 8, "max_length": 1024,
    "dtype": "float32", "output_dir": None,
}
#: What ``--config`` may set: the keys a training config shares with this command.
CONFIG_KEYS = ("model_name_or_path", "dataset_name", "dataset_config", "dataset_train_split", "max_length", "dtype",
               "per_device_eval_batch_size", "loss", "balance_level", "balance_use_reference", "balance_clip")
#: Option names of earlier releases, accepted with a note (adadpo.cli.options).
RENAMED = {"--model": "--model_name_or_path", "--dataset": "--dataset_name", "--split": "--dataset_train_split",
           "--kappa": "--balance_clip", "--level": "--balance_level", "--use_reference": "--balance_use_reference",
           "--batch_size": "--per_device_eval_batch_size"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help=HELP, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="an `adadpo train` YAML config: its model, data, length, loss and balance_* keys")
    p.add_argument("--model_name_or_path", help="causal LM: Hugging Face Hub id or local directory (its tokenizer too)")
    p.add_argument("--dataset_name", help="preference dataset: Hub id, jsonl/json/parquet/csv file or directory")
    p.add_argument("--dataset_config", help="dataset configuration name (Hub datasets)")
    p.add_argument("--dataset_train_split", help="split to read (default: train)")
    p.add_argument("--ref_model", help="reference model (same tokenizer); default: the model is its own reference, "
                                       "as at step 0")
    p.add_argument("--loss", choices=list(LOSSES), help="loss whose imbalance is measured (default: dpo)")
    add_balance_arguments(p, only=("level", "use_reference"), defaults=False)  # the statistic log rho is measured with
    p.add_argument("--balance_clip", type=float, nargs="+", metavar="KAPPA",
                   help="clips whose binding share is reported (default: 2 5 10 100; a config's balance_clip: its own)")
    p.add_argument("--num_pairs", type=int, help="use the first N pairs of the split (default: 512)")
    p.add_argument("--per_device_eval_batch_size", type=int, help="pairs per forward pass (default: 8)")
    p.add_argument("--max_length", type=int, help="truncate prompt + response to this many tokens (default: 1024)")
    p.add_argument("--dtype", choices=DTYPES, help="dtype the model(s) are loaded in (default: float32)")
    p.add_argument("--output_dir", help="write imbalance.json and the histogram imbalance.png here")


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every option the command line left out taken from ``--config`` (:data:`CONFIG_KEYS`), else
    its default; ``model_name_or_path`` and ``dataset_name`` must come from one of the two."""
    config: dict[str, Any] = {}
    if args.config is not None:
        config = _read_config(args.config)
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, config[key] if key in config and config[key] is not None else default)
    if isinstance(args.balance_clip, (int, float)):  # a training config's single clip
        args.balance_clip = [float(args.balance_clip)]
    if config.get("balance_use_reference") and args.ref_model is None and args.balance_use_reference:
        print(f"adadpo diagnose: note: balance_use_reference: true in {args.config} is not measured: without "
              "--ref_model the model is its own reference at step 0 (rho = 1); measuring on the policy instead")
        args.balance_use_reference = False
    for key, option in (("model_name_or_path", "--model_name_or_path M"), ("dataset_name", "--dataset_name D")):
        if getattr(args, key) is None:
            raise ValueError(f"{key} is required: give {option}, or --config FILE whose YAML sets it")
    return args


def _read_config(path: str) -> dict[str, Any]:
    import yaml

    if not os.path.isfile(path):
        raise ValueError(f"--config {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ValueError(f"--config {path} is not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(config, dict):
        raise ValueError(f"--config {path}: expected a YAML mapping of training keys, got {type(config).__name__}")
    return {k: v for k, v in config.items() if k in CONFIG_KEYS}


# ----------------------------------------------------------------------------------------------- checks


def _check_args(args: argparse.Namespace) -> None:
    """Refuse settings that make no sense before anything is loaded."""
    family = get_family(args.loss)
    if args.num_pairs < 1:
        raise ValueError(f"--num_pairs must be >= 1, got {args.num_pairs}")
    if args.per_device_eval_batch_size < 1:
        raise ValueError(f"--per_device_eval_batch_size must be >= 1, got {args.per_device_eval_batch_size}")
    if args.max_length < 2:
        raise ValueError(f"--max_length must be >= 2 (a prompt token and a response token), got {args.max_length}")
    if args.dtype not in DTYPES:  # argparse checks the command line's; this is for a config's
        raise ValueError(f"dtype={args.dtype!r}: expected one of {list(DTYPES)}")
    bad = [k for k in args.balance_clip if not k >= 1]
    if bad:
        raise ValueError(f"--balance_clip values must all be >= 1 (a clip ratio), got {bad[0]:g}")
    from adadpo.core.registry import reference_based

    if not family.needs_reference:
        if args.ref_model is not None:
            raise ValueError(f"--ref_model was given, but loss {args.loss!r} is reference-free; drop it or use "
                             f"{reference_based()}")
        if args.balance_use_reference:
            raise ValueError(f"--balance_use_reference needs a reference-based loss ({reference_based()}), but "
                             f"loss is {args.loss!r}")
    elif args.balance_use_reference and args.ref_model is None:
        raise ValueError(
            "--balance_use_reference needs --ref_model: without one the model is its own reference, so pi / pi_ref = 1 "
            "for every pair and log rho would be 0 everywhere; pass --ref_model or drop --balance_use_reference"
        )


# ------------------------------------------------------------------------------------------- log-probs


def _load_model(name: str, dtype: str, what: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype if dtype == "auto" else getattr(torch, dtype))
    except (OSError, ValueError) as err:  # missing path, offline hub, not a causal LM
        raise ValueError(f"could not load {what}={name!r} ({type(err).__name__}: {err})") from err
    return model.eval()


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ValueError(f"could not load the tokenizer of model_name_or_path={name!r} "
                         f"({type(err).__name__}: {err})") from err


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
    if args.balance_use_reference:
        return f"{args.ref_model} (log rho measured on the ratios pi / pi_ref)"
    return f"{args.ref_model} (its sums are saved, but without --balance_use_reference log rho does not depend on them)"


def describe(report: Any, args: argparse.Namespace, requested: int) -> str:
    """The text printed by the command: the settings, then ``report.to_text()``."""
    used = report.num_pairs
    pairs = f"{used} pairs" + ("" if used == requested else
                               f" ({requested - used} of the first {requested} dropped: prompt reaches --max_length)")
    dataset = args.dataset_name + (f" [{args.dataset_config}]" if args.dataset_config else "")
    head = [
        "adadpo diagnose",
        f"  model:     {args.model_name_or_path}",
        f"  reference: {_reference_note(args)}",
        f"  dataset:   {dataset}, split {args.dataset_train_split!r}, {pairs}",
        f"  loss:      {args.loss}, level {args.balance_level}"
        + (", on pi / pi_ref" if args.balance_use_reference else ""),
    ]
    return "\n\n".join(["\n".join(head), report.to_text()])  # the statistics once (they were also put in words)


def write_outputs(directory: str, report: Any, args: argparse.Namespace, pairs: Any, requested: int) -> tuple[str, str]:
    """Write ``imbalance.json`` (settings, summary, per-pair values) and ``imbalance.png`` (histogram of log rho
    with lines at 0 and at ``+-log kappa``); return their paths."""
    os.makedirs(directory, exist_ok=True)
    settings = {
        "model_name_or_path": args.model_name_or_path, "ref_model": args.ref_model, "dataset_name": args.dataset_name,
        "dataset_config": args.dataset_config, "dataset_train_split": args.dataset_train_split, "loss": args.loss,
        "balance_level": args.balance_level, "balance_use_reference": args.balance_use_reference,
        "balance_clip": [float(k) for k in args.balance_clip], "num_pairs_requested": requested,
        "per_device_eval_batch_size": args.per_device_eval_batch_size, "max_length": args.max_length,
        "dtype": args.dtype, "reference": _reference_note(args),
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
    from adadpo.plotting import save

    save(imbalance_figure(report, args), path, dpi=120)


def imbalance_figure(report: Any, args: argparse.Namespace):
    """The histogram of ``report.log_rho`` with lines at 0 and ``+-log kappa`` per kappa; the legend sits below
    the axes so it covers no line. ``args``: ``loss``, ``balance_level``, ``balance_use_reference``, ``dataset_name``,
    ``dataset_train_split``."""
    from adadpo.plotting import figure, legend_outside, pyplot

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
    ref = ", pi / pi_ref" if args.balance_use_reference else ""
    ax.set_title(f"Gradient imbalance of plain {args.loss} ({args.balance_level} level{ref}): {report.num_pairs} pairs "
                 f"of {os.path.basename(args.dataset_name.rstrip('/'))} [{args.dataset_train_split}]\n"
                 f"rho > 1 (rejected pushed harder) in {100 * report.rejected_dominant:.1f}% of pairs", fontsize=10)
    ax.set_xlabel("log rho = log(|push on rejected| / |pull on chosen|)")
    ax.set_ylabel("pairs")
    legend_outside(fig, ax, "lower center", ncols=min(3, 2 + len(report.clip_fractions)))
    return fig


# ----------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    from adadpo.trl.data import check_preference_dataset
    from adadpo.trl.loading import load_preference_dataset, select_split

    args = resolve(args)
    _check_args(args)
    data = select_split(load_preference_dataset(args.dataset_name, args.dataset_config), args.dataset_train_split,
                        "dataset_train_split")
    requested = min(args.num_pairs, len(data))
    subset = data.select(range(requested))
    check_preference_dataset(subset, f"{args.dataset_train_split!r} split of the")  # before loading any model

    tokenizer = _load_tokenizer(args.model_name_or_path)
    model = _load_model(args.model_name_or_path, args.dtype, "model_name_or_path")
    ref_model = _load_model(args.ref_model, args.dtype, "--ref_model") if args.ref_model else None
    if ref_model is not None and ref_model.get_input_embeddings().num_embeddings < len(tokenizer):
        raise ValueError(
            f"--ref_model {args.ref_model!r} has {ref_model.get_input_embeddings().num_embeddings} token embeddings "
            "but "
            f"the tokenizer of model_name_or_path has {len(tokenizer)} tokens; the two models must share a tokenizer"
        )
    pairs = pair_logps(model, tokenizer, subset, ref_model=ref_model, batch_size=args.per_device_eval_batch_size,
                       max_length=args.max_length)
    report = imbalance(args.loss, pairs, args.balance_level, args.balance_use_reference, tuple(args.balance_clip))
    print(describe(report, args, requested))
    if args.output_dir:
        json_path, png_path = write_outputs(args.output_dir, report, args, pairs, requested)
        print(f"\nwrote {json_path} and {png_path}")
    else:
        print("\n(--output_dir DIR also writes these numbers per pair, imbalance.json, and their histogram, "
              "imbalance.png)")
    return 0
