"""adadpo's length-controlled win rate against AlpacaEval 2's own leaderboard, on AlpacaEval's published annotations.

    python benchmarks/alpaca_eval_lc.py REPO [--markdown docs/results/alpaca_eval_lc.md] [--test-data DIR]

REPO is a copy of github.com/tatsu-lab/alpaca_eval: a clone (a directory with ``results/``) or a bare git directory
(read with ``git show``). For every model whose ``results/<model>/weighted_alpaca_eval_gpt4_turbo/annotations.json``
is stored and that the leaderboard (``src/alpaca_eval/leaderboards/data_AlpacaEval_2/
weighted_alpaca_eval_gpt4_turbo_leaderboard.csv``) lists, it compares the leaderboard's LC with:

* ``old``: :func:`adadpo.eval.length_controlled_winrate` per model as documented before (no difficulty);
* ``new``: :func:`adadpo.eval.length_controlled_winrates` over all the models (difficulty estimated jointly, each
  model's length coefficient pulled towards the models' median);
* diagnostics: ``new`` without the pull; AlpacaEval's own fit (L1 penalty, liblinear, 5-fold grouped
  cross-validation over C) with the same difficulty; and the leaderboard's stored per-model coefficients
  (``src/alpaca_eval/metrics/weights/...``) read out with our difficulty, which isolates the difficulty estimate.

``--test-data DIR`` writes the small sample the tests use (tests/data/alpaca_eval/). Needs the ``eval`` extra and
scipy (comes with scikit-learn). About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from adadpo.eval import length_controlled_winrate, length_controlled_winrates
from adadpo.eval.glm import sigmoid

ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"
LEADERBOARD = f"src/alpaca_eval/leaderboards/data_AlpacaEval_2/{ANNOTATOR}_leaderboard.csv"
WEIGHTS = f"src/alpaca_eval/metrics/weights/{ANNOTATOR}/length_controlled_v1/baseline_gpt4_1106_preview.csv"
BASELINE = "gpt4_1106_preview"
#: The test sample: the worst models of each estimator and a spread of others.
SAMPLE = ["gpt4_gamed", "NullModel", "text_davinci_001", "gpt4_0613_concise", "alpaca-7b", "claude-2",
          "gpt-3.5-turbo-1106", "FuseChat-Llama-3.1-8B-Instruct", "vicuna-13b"]


class Repo:
    """Read files of a clone or a bare git directory."""

    def __init__(self, path: Path):
        self.path, self.bare = path, not (path / "results").is_dir()

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(self.path), *args], capture_output=True, check=True).stdout

    def read(self, rel: str) -> bytes:
        return self._git("show", f"HEAD:{rel}") if self.bare else (self.path / rel).read_bytes()

    def commit(self) -> str:
        git_dir = self.path if self.bare else self.path / ".git"
        return subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "unknown"

    def annotation_files(self) -> dict[str, str]:
        """{model: path} of the stored annotation files (git-lfs-less copies may list files whose blob is absent)."""
        if not self.bare:
            found = self.path.glob(f"results/*/{ANNOTATOR}/annotations.json")
            return {p.parts[-3]: str(p.relative_to(self.path)) for p in found}
        listing = self._git("ls-tree", "-r", "--name-only", "HEAD", "results/").decode().splitlines()
        out = {}
        for rel in listing:
            parts = rel.split("/")
            if len(parts) == 4 and parts[2] == ANNOTATOR and parts[3] == "annotations.json":
                probe = subprocess.run(["git", "--git-dir", str(self.path), "cat-file", "-e", f"HEAD:{rel}"],
                                       capture_output=True)
                if probe.returncode == 0:
                    out[parts[1]] = rel
        return out


def read_csv(data: bytes) -> dict[str, dict[str, str]]:
    rows = list(csv.reader(io.StringIO(data.decode())))
    return {r[0]: dict(zip(rows[0][1:], r[1:])) for r in rows[1:]}


def load(repo: Repo) -> tuple[dict, dict, dict]:
    """(rows by model, leaderboard rows, stored weights). Rows: instruction text, p in [0, 1], model and baseline
    lengths in characters; records without a preference dropped (none are, in the stored files)."""
    board, weights = read_csv(repo.read(LEADERBOARD)), read_csv(repo.read(WEIGHTS))
    rows = {}
    for model, rel in sorted(repo.annotation_files().items()):
        if model not in board:
            continue
        recs = json.loads(repo.read(rel))
        kept = [r for r in recs if r.get("preference") is not None]
        rows[model] = {
            "instruction": [r["instruction"] for r in kept],
            "p": np.array([0.5 if float(r["preference"]) == 0 else float(r["preference"]) - 1 for r in kept]),
            "len_model": np.array([len(r["output_2"]) for r in kept], float),
            "len_baseline": np.array([len(r["output_1"]) for r in kept], float),
        }
    return rows, board, weights


def alpaca_eval_fit(X: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AlpacaEval's per-model fit, reimplemented: soft labels by duplication, L1 penalty, liblinear, no intercept,
    C chosen from logspace(-4, 4, 10) by 5-fold cross-validation grouped by comparison on the soft log-loss."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    n = len(p)
    X2, y2 = np.r_[X, X], np.r_[np.ones(n), np.zeros(n)]
    w2, groups = np.r_[p, 1 - p], np.r_[np.arange(n), np.arange(n)]

    import sklearn

    # scikit-learn 1.8 deprecated ``penalty``: the L1 penalty is ``l1_ratio=1`` there, ``penalty="l1"`` before.
    l1 = {"l1_ratio": 1.0} if tuple(map(int, sklearn.__version__.split(".")[:2])) >= (1, 8) else {"penalty": "l1"}

    def fit(C, idx):
        clf = LogisticRegression(C=C, solver="liblinear", fit_intercept=False, random_state=123, **l1)
        return clf.fit(X2[idx], y2[idx], sample_weight=w2[idx])

    losses = []
    for C in np.logspace(-4, 4, 10):
        loss = 0.0
        for train, test in GroupKFold(5).split(X2, y2, groups):
            q = np.clip(fit(C, train).predict_proba(X2[test])[:, 1], 1e-15, 1 - 1e-15)
            target = np.where(y2[test] == 1, w2[test], 1 - w2[test])
            loss += -np.mean(target * np.log(q) + (1 - target) * np.log(1 - q))
        losses.append((loss, C))
    return fit(min(losses)[1], np.arange(2 * n)).coef_[0]


def compare(rows: dict, board: dict, weights: dict) -> dict:
    models = [m for m in rows if m != BASELINE]
    flat = {k: [] for k in ("model", "instruction", "p", "len_model", "len_baseline")}
    for m, r in rows.items():
        flat["model"] += [m] * len(r["p"])
        flat["instruction"] += r["instruction"]
        for k in ("p", "len_model", "len_baseline"):
            flat[k].append(r[k])
    args = (flat["model"], flat["instruction"], *(np.concatenate(flat[k]) for k in ("p", "len_model", "len_baseline")))
    t0 = time.perf_counter()
    new = length_controlled_winrates(*args)
    seconds = time.perf_counter() - t0
    nopool = length_controlled_winrates(*args, difficulty=new.difficulty, pool_length=0)
    out = {"seconds_new": seconds, "length_centre": new.length_centre, "difficulty": new.difficulty, "models": {}}
    for m in models:
        r = rows[m]
        d = np.array([new.difficulty[i] for i in r["instruction"]])
        delta = r["len_model"] - r["len_baseline"]
        X = np.column_stack([np.tanh(delta / np.std(delta, ddof=1)), d, np.ones(len(d))])
        ae = alpaca_eval_fit(X, r["p"])
        w = weights[m]
        stored = [float(w["not_gamed_baseline.astype(float)"]), float(w["instruction_difficulty"])]
        old = length_controlled_winrate(r["p"], r["len_model"], r["len_baseline"], warn_incomparable=False)
        out["models"][m] = {
            "n": len(r["p"]), "mean_length": float(r["len_model"].mean()),
            "share_shorter": float(np.mean(delta < 0)),
            "wr": 100 * float(r["p"].mean()), "board_wr": float(board[m]["win_rate"]),
            "board": float(board[m]["length_controlled_winrate"]),
            "old": 100 * old.lc, "new": 100 * new.models[m].lc, "new_se": 100 * new.models[m].lc_se,
            "nopool": 100 * nopool.models[m].lc, "alpaca_fit": 100 * float(np.mean(sigmoid(ae[2] + ae[1] * d))),
            "board_coefs": 100 * float(np.mean(sigmoid(stored[0] + stored[1] * d))),
            "length_coef": new.models[m].length_coef, "nopool_length_coef": nopool.models[m].length_coef,
            "board_length_coef": -float(w["np.tanh(std_delta_len)"]),  # AlpacaEval's delta is baseline - model
        }
    return out


def summary(res: dict, key: str) -> dict:
    from scipy.stats import spearmanr

    ms = list(res["models"])
    ours = np.array([res["models"][m][key] for m in ms])
    board = np.array([res["models"][m]["board"] for m in ms])
    diff = ours - board
    worst = int(np.argmax(np.abs(diff)))
    return {"mean_abs": float(np.mean(np.abs(diff))), "mean": float(np.mean(diff)), "worst": ms[worst],
            "worst_diff": float(diff[worst]), "over5": int(np.sum(np.abs(diff) > 5)),
            "spearman": float(spearmanr(ours, board).statistic)}


VARIANTS = [("wr", "raw win rate (no length control)"),
            ("old", "old: one model at a time, no difficulty (`length_controlled_winrate`)"),
            ("new", "**new: across models (`length_controlled_winrates`, `adadpo lc`)**"),
            ("nopool", "new without the length pull (`pool_length=0`)"),
            ("alpaca_fit", "AlpacaEval's fit (L1, liblinear, CV over C) with the new difficulty, no pull"),
            ("board_coefs", "the leaderboard's stored coefficients with the new difficulty")]


def why(res: dict, model: str) -> str:
    r = res["models"][model]
    return (f"{model}: mean length {r['mean_length']:.0f} characters, shorter than the baseline in "
            f"{100 * r['share_shorter']:.0f}% of comparisons; length coefficient {r['length_coef']:.2f} here "
            f"({r['nopool_length_coef']:.2f} without the pull) vs {r['board_length_coef']:.2f} on the leaderboard")


def markdown(res: dict, commit: str, n_files: int) -> str:
    lines = ["# AlpacaEval 2: adadpo's LC against the leaderboard", "",
             f"`python benchmarks/alpaca_eval_lc.py REPO --markdown docs/results/alpaca_eval_lc.md` on tatsu-lab/"
             f"alpaca_eval at commit `{commit}`: the {len(res['models'])} models (besides the baseline "
             f"`{BASELINE}`) whose `results/<model>/{ANNOTATOR}/annotations.json` is stored and that the leaderboard "
             f"lists ({n_files} files read, the baseline's own included). LC in percent, as the leaderboard shows it; "
             "differences are ours minus the leaderboard's, in LC points.", "",
             "| estimator | mean abs. diff. | mean diff. | worst (diff.) | models off by > 5 | Spearman |",
             "|---|---|---|---|---|---|"]
    for key, label in VARIANTS:
        s = summary(res, key if key != "wr" else "wr")
        lines.append(f"| {label} | {s['mean_abs']:.2f} | {s['mean']:+.2f} | {s['worst']} ({s['worst_diff']:+.1f}) | "
                     f"{s['over5']} | {s['spearman']:.3f} |")
    s_old, s_new = summary(res, "old"), summary(res, "new")
    gap = np.array([r["nopool"] - r["alpaca_fit"] for r in res["models"].values()])
    lines += ["", f"The penalty alone: adadpo's fit without the pull vs AlpacaEval's L1 fit, same difficulty: "
              f"{np.mean(np.abs(gap)):.2f} LC points apart on average, {np.max(np.abs(gap)):.2f} at most.",
              "", f"Worst model, new: {why(res, s_new['worst'])}.", "",
              f"Worst model, old: {why(res, s_old['worst'])}.", "",
              f"The joint difficulty fit and the {len(res['models']) + 1} per-model fits took "
              f"{res['seconds_new']:.1f} s. Pooled length-coefficient centre: {res['length_centre']:.3f}.", "",
              "| model | n | mean length | WR | leaderboard LC | old | new (± SE) | new − leaderboard |",
              "|---|---|---|---|---|---|---|---|"]
    for m, r in sorted(res["models"].items(), key=lambda kv: -kv[1]["board"]):
        lines.append(f"| {m} | {r['n']} | {r['mean_length']:.0f} | {r['wr']:.2f} | {r['board']:.2f} | {r['old']:.2f} | "
                     f"{r['new']:.2f} ± {r['new_se']:.2f} | {r['new'] - r['board']:+.2f} |")
    return "\n".join(lines) + "\n"


def write_test_data(rows: dict, res: dict, board: dict, out: Path, commit: str) -> None:
    """The sample the tests use: text stripped, instructions as the first 12 hex digits of their SHA-1."""
    out.mkdir(parents=True, exist_ok=True)
    key = {i: hashlib.sha1(i.encode()).hexdigest()[:12] for r in rows.values() for i in r["instruction"]}
    assert len(set(key.values())) == len(key), "hash collision"
    with (out / "annotations.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["model", "instruction_id", "preference", "len_model", "len_baseline"])
        for m in SAMPLE:
            r = rows[m]
            for i, p, lm, lb in zip(r["instruction"], r["p"], r["len_model"], r["len_baseline"]):
                w.writerow([m, key[i], f"{p:.6g}", int(lm), int(lb)])
    with (out / "difficulty.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["instruction", "difficulty"])
        for i, d in sorted(res["difficulty"].items(), key=lambda kv: key[kv[0]]):
            w.writerow([key[i], f"{d:.6f}"])
    meta = {"commit": commit, "models_in_joint_fit": len(rows), "length_centre": res["length_centre"],
            "leaderboard": {m: {"length_controlled_winrate": float(board[m]["length_controlled_winrate"]),
                                "win_rate": float(board[m]["win_rate"])} for m in SAMPLE}}
    (out / "leaderboard.json").write_text(json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", type=Path, help="tatsu-lab/alpaca_eval: a clone or a bare git directory")
    ap.add_argument("--markdown", type=Path, help="write the comparison as markdown here")
    ap.add_argument("--json", type=Path, help="write per-model figures as JSON here")
    ap.add_argument("--test-data", type=Path, help="write the tests' sample here")
    args = ap.parse_args(argv)
    repo = Repo(args.repo)
    rows, board, weights = load(repo)
    res = compare(rows, board, weights)
    text = markdown(res, repo.commit(), len(rows))
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in res.items() if k != "difficulty"}, indent=1) + "\n")
    if args.test_data:
        write_test_data(rows, res, board, args.test_data, repo.commit())
    return 0


if __name__ == "__main__":
    sys.exit(main())
