"""The study's statistics: intervals over seeds, a bootstrap over prompts and seeds, sign counts over cells,
best versus best on split prompts, ΔTQ per kind of prompt, and the length the LC estimator leaves in.

``rows`` are a sweep's rows (trained and untrained); ``recs`` maps a row's key to its per-comparison records
(:func:`adadpo.bench.records.attach`). Every difference is paired, in one of two ways (``against``):

* against the untrained model (``against="untrained"``): ``d(c, s) = metric(method, c, s) - metric(untrained, s)``;
* against another method (``against=plain``): ``d(c, s) = metric(method, c, s) - metric(plain, c, s)``.

**Per-seed interval** (:func:`per_seed`, the primary one): ``m_s`` = the mean over the cells ``c`` of ``d(c, s)``
(the cells seed ``s`` has), then the 95% t-interval over the seeds of ``m_s``. Seeds are the independent
draws (each has its own training order, evaluation seed and untrained baseline); cells that share a seed are not.

**Bootstrap** (:func:`bootstrap`): from per-prompt differences ``D[s, c, p]`` (the mean over prompt ``p``'s
answers of the records' ``field``, ``truth`` for TQ), ``draws`` times: draw the seeds with replacement and the
held-out prompts with replacement (one draw of prompts for every run: all runs answer the same prompts), and take
the mean over drawn seeds of the mean over cells of the mean over drawn prompts; the interval is the 2.5th to
97.5th percentile. Seeded (``seed``), so a report is the same every time it is written. TQ only: LC refits a
GLM on each run's comparisons, so its primary interval is the per-seed one.

**Sign counts** (:func:`signs`): how many cells have their seed-mean ``d`` above, below and at zero.

**Best versus best** (:func:`best_vs_best`): the held-out prompts are split by the parity of their index (fixed,
not drawn): each form's best cell by the seed-mean metric on the even prompts, and the two chosen cells compared
on the odd prompts, so that picking the best cell does not also pick its luck.

**Length left in LC** (:func:`lc_bias`): in these worlds the judge at equal length is the truth, so ``LC - TQ``
is the estimator's error; regressed over runs on the words the policy's answers have over the reference's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from adadpo.bench.records import column, recompute
from adadpo.bench.run import UNTRAINED
from adadpo.bench.stats import Cell, Interval, cell_of, cell_order, interval, value

#: Prompt-id parity of the halves of :func:`best_vs_best`.
SELECT, REPORT = 0, 1
#: Bootstrap draws and the seed of their generator.
DRAWS, SEED = 2000, 0

Pairs = dict[Cell, dict[int, tuple[dict, dict]]]


def pairs_of(rows: Sequence[dict], method: str, against: str) -> Pairs:
    """Per cell and seed: ``(run of method, its baseline)``, the baseline being the untrained row of the seed
    (``against="untrained"``) or ``against``'s run in the same cell and seed; runs without one are left out."""
    base: dict[tuple, dict] = {}
    for r in rows:
        if r["method"] == against:
            base[(None, r["seed"]) if against == UNTRAINED else (cell_of(r), r["seed"])] = r
    out: Pairs = {}
    for r in rows:
        if r["method"] == method:
            b = base.get((None if against == UNTRAINED else cell_of(r), r["seed"]))
            if b is not None:
                out.setdefault(cell_of(r), {})[r["seed"]] = (r, b)
    return dict(sorted(out.items(), key=lambda kv: cell_order(kv[0])))


def row_diffs(rows: Sequence[dict], method: str, against: str, metric: str) -> dict[Cell, dict[int, float]]:
    """``{cell: {seed: d(c, s)}}`` of a row metric (see the module doc)."""
    return {c: {s: value(r, metric) - value(b, metric) for s, (r, b) in per.items()}
            for c, per in pairs_of(rows, method, against).items()}


def per_seed(diffs: dict[Cell, dict[int, float]]) -> tuple[Interval, dict[int, float]]:
    """The primary interval: per seed, the mean of ``d`` over the cells it has; the t-interval over seeds.
    Returns the interval and the per-seed means."""
    seeds = sorted({s for per in diffs.values() for s in per})
    means = {s: float(np.mean([per[s] for per in diffs.values() if s in per])) for s in seeds}
    return interval(list(means.values())), means


def signs(diffs: dict[Cell, dict[int, float]]) -> dict[str, int]:
    """Cells whose seed-mean difference is above, below and at zero."""
    means = [float(np.mean(list(per.values()))) for per in diffs.values() if per]
    return {"above": sum(m > 0 for m in means), "below": sum(m < 0 for m in means),
            "zero": sum(m == 0 for m in means), "cells": len(means)}


def prompt_means(records: Sequence[dict], field: str, prompts: int) -> np.ndarray:
    """``[prompts]``: per held-out prompt, the mean of ``field`` over its records (NaN for a prompt without)."""
    ids = np.array([r["prompt"] for r in records], dtype=int)
    total = np.bincount(ids, weights=column(records, field), minlength=prompts)
    count = np.bincount(ids, minlength=prompts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def prompt_diffs(pairs: Pairs, recs: dict[str, list[dict]], field: str = "truth",
                 keep: np.ndarray | None = None) -> np.ndarray | None:
    """``D[s, c, p]``: per seed, cell and held-out prompt, the paired difference of the prompt's mean ``field``
    (NaN where the cell has no run with that seed); ``keep``: the prompt ids to keep. ``None`` when a run
    has no records."""
    if not pairs or any(r.get("key") not in recs or b.get("key") not in recs for per in pairs.values()
                        for r, b in per.values()):
        return None
    seeds = sorted({s for per in pairs.values() for s in per})
    prompts = 1 + max(r["prompt"] for per in pairs.values() for a, _ in per.values() for r in recs[a["key"]])
    out = np.full((len(seeds), len(pairs), prompts), np.nan)
    for j, per in enumerate(pairs.values()):
        for s, (r, b) in per.items():
            out[seeds.index(s), j] = prompt_means(recs[r["key"]], field, prompts) - prompt_means(
                recs[b["key"]], field, prompts)
    return out if keep is None else out[:, :, keep]


def _cell_present(d: np.ndarray) -> np.ndarray:
    return ~np.all(np.isnan(d), axis=2)


def _cell_means(d: np.ndarray) -> np.ndarray:
    """``[S, C]``: each cell's mean over prompts, NaN for a cell the seed lacks."""
    present = _cell_present(d)
    out = np.full(present.shape, np.nan)
    out[present] = np.nanmean(d[present], axis=1)
    return out


def point(d: np.ndarray) -> float:
    """The estimate of ``D``: mean over seeds of the mean over cells of the mean over prompts."""
    means = _cell_means(d)
    return float(np.mean([np.mean(m[~np.isnan(m)]) for m in means if (~np.isnan(m)).any()]))


def seed_interval(d: np.ndarray) -> Interval:
    """:func:`per_seed` of ``D``: the t-interval over seeds of each seed's mean over cells and prompts."""
    means = _cell_means(d)
    return interval([float(np.mean(m[~np.isnan(m)])) for m in means if (~np.isnan(m)).any()])


def bootstrap(d: np.ndarray, draws: int = DRAWS, seed: int = SEED) -> Interval:
    """Percentile interval of the statistic of :func:`point` over ``draws`` resamples of seeds and prompts
    (see the module doc); ``n`` is the number of seeds."""
    present = _cell_present(d)
    d = d[present.any(axis=1)]  # seeds without any cell say nothing
    present = _cell_present(d)
    seeds, _, prompts = d.shape
    if seeds == 0 or prompts == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(prompts, np.full(prompts, 1 / prompts), size=draws).T / prompts  # [P, B]
    v = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=draws).T / seeds  # [S, B]
    filled = np.nan_to_num(d)  # NaN only where a whole cell is missing (masked below)
    per_cell = np.einsum("scp,pb->scb", filled, w)
    per_seed_ = (per_cell * present[:, :, None]).sum(1) / present.sum(1)[:, None]  # [S, B]
    stats = (v * per_seed_).sum(0)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return Interval(point(d), float(lo), float(hi), seeds)


def half_value(records: Sequence[dict], metric: str, half: int) -> float:
    """``metric`` (``tq`` or ``lc``) of a run on the held-out prompts whose index has parity ``half``."""
    subset = [r for r in records if r["prompt"] % 2 == half]
    return recompute(subset, lc=metric == "lc")[metric]


def splits(recs: dict[str, list[dict]], keys: Sequence[str]) -> bool:
    """Whether the records of the runs ``keys`` hold prompts of both halves of the best-versus-best split (an
    even and an odd index): an evaluation on one held-out prompt has nothing to choose on, or to report on."""
    return {r["prompt"] % 2 for k in keys for r in recs.get(k, ())} == {SELECT, REPORT}


def best_vs_best(rows: Sequence[dict], recs: dict[str, list[dict]], plain: str, balanced: str, metric: str = "tq",
                 draws: int = DRAWS) -> dict[str, Any] | None:
    """Each form's best cell by the seed-mean ``metric`` on the even prompts, compared on the odd prompts:
    ``cells`` (the chosen cell per form), ``delta`` (each form's chosen cell minus the untrained model, on the
    odd prompts: per-seed interval, ``None`` without untrained rows), ``diff`` (``balanced - plain`` paired on
    seed, per-seed interval) and, for TQ, ``bootstrap`` (over the odd prompts and seeds). ``None`` when a run
    of either form has no records, or their prompts do not split (:func:`splits`: a single held-out prompt)."""
    runs = {f: [r for r in rows if r["method"] == f] for f in (plain, balanced)}
    if not all(runs.values()) or any(r.get("key") not in recs for rs in runs.values() for r in rs):
        return None
    if not splits(recs, [r["key"] for rs in runs.values() for r in rs]):
        return None
    chosen: dict[str, Cell] = {}
    for f, rs in runs.items():
        score: dict[Cell, list[float]] = {}
        for r in rs:
            score.setdefault(cell_of(r), []).append(half_value(recs[r["key"]], metric, SELECT))
        chosen[f] = max(sorted(score, key=cell_order), key=lambda c: np.mean(score[c]))
    picked = {f: {r["seed"]: r for r in runs[f] if cell_of(r) == chosen[f]} for f in runs}
    seeds = sorted(set(picked[plain]) & set(picked[balanced]))
    report = {f: {s: half_value(recs[picked[f][s]["key"]], metric, REPORT) for s in seeds} for f in runs}
    base = {r["seed"]: r for r in rows if r["method"] == UNTRAINED and r.get("key") in recs}
    delta = None
    if all(s in base for s in seeds) and seeds:
        untrained = {s: half_value(recs[base[s]["key"]], metric, REPORT) for s in seeds}
        delta = {f: interval([report[f][s] - untrained[s] for s in seeds]) for f in runs}
    out: dict[str, Any] = {"metric": metric, "cells": chosen, "seeds": seeds, "delta": delta,
                           "diff": interval([report[balanced][s] - report[plain][s] for s in seeds]),
                           "bootstrap": None}
    if metric == "tq" and seeds:
        pairs = {("best",): {s: (picked[balanced][s], picked[plain][s]) for s in seeds}}
        d = prompt_diffs(pairs, recs)
        odd = np.arange(d.shape[2]) % 2 == REPORT
        out["bootstrap"] = bootstrap(d[:, :, odd], draws)
    return out


def kinds_of(recs: dict[str, list[dict]]) -> list[str]:
    """The kinds of prompt in the records, in the order they first appear."""
    return list(dict.fromkeys(r["kind"] for found in recs.values() for r in found))


def per_kind(rows: Sequence[dict], recs: dict[str, list[dict]], plain: str, balanced: str, draws: int = DRAWS
             ) -> dict[str, dict[str, Any]] | None:
    """Per kind of prompt: ``prompts`` (how many held-out prompts), each form's ΔTQ over the untrained model
    (per-seed interval, or ``None`` without untrained rows) and ``balanced - plain`` (per-seed interval and
    bootstrap), on that kind's prompts only. ``None`` without records."""
    pairs = pairs_of(rows, balanced, plain)
    d_all = prompt_diffs(pairs, recs)
    if d_all is None:
        return None
    first = next(iter(pairs.values()))
    some = recs[next(iter(first.values()))[0]["key"]]
    kind_of = {r["prompt"]: r["kind"] for r in some}
    ids = np.arange(d_all.shape[2])
    out = {}
    for kind in kinds_of({"": some}):
        keep = np.array([kind_of.get(int(p)) == kind for p in ids])
        entry: dict[str, Any] = {"prompts": int(keep.sum())}
        for f in (plain, balanced):
            d = prompt_diffs(pairs_of(rows, f, UNTRAINED), recs, keep=keep)
            entry[f] = None if d is None else seed_interval(d)
        d = d_all[:, :, keep]
        entry["diff"], entry["bootstrap"] = seed_interval(d), bootstrap(d, draws)
        out[kind] = entry
    return out


#: The joint LC's pull of each run's length coefficient towards the runs' median (see
#: :data:`adadpo.eval.POOL_LENGTH`): none. The pull stands in for AlpacaEval's regularisation towards rewrites of its
#: baseline and is tuned on its leaderboard's models; in a world, where runs answer up to 6x the reference's length,
#: it drags a long-answering run's length coefficient towards the short ones'. Over world A's first 6 trained runs:
#: LC - TQ against Δwords +0.00117 per word (SE 0.00022) with the pull, -0.00001 (0.00021) without it, and each
#: run's own LC -0.00027 (0.00025).
WORLD_POOL_LENGTH = 0.0


def joint_lc(rows: Sequence[dict], recs: dict[str, list[dict]], pool_length: float = WORLD_POOL_LENGTH
             ) -> dict[str, float]:
    """Each run's LC with the instruction difficulty estimated jointly over ``rows`` (the untrained ones too), as
    AlpacaEval 2 estimates it over its models (:func:`adadpo.eval.length_controlled_winrates`): every run of a
    world answers the same held-out prompts against the same reference answers, so an instruction is a
    (held-out prompt, answer index) and each run is a model. From the per-comparison records: the judge's
    probability, the answer's and the reference's words. ``pool_length``: see :data:`WORLD_POOL_LENGTH`.
    ``{run key: lc}``; ``{}`` unless two or more runs have records."""
    from adadpo.eval import length_controlled_winrates

    use = [r for r in rows if r.get("key") in recs]
    if len(use) < 2:
        return {}
    comps = [(r["key"], c) for r in use for c in recs[r["key"]]]
    fit = length_controlled_winrates([k for k, _ in comps], [(c["prompt"], c["sample"]) for _, c in comps],
                                     [c["judge"] for _, c in comps], [c["words"] for _, c in comps],
                                     [c["ref_words"] for _, c in comps], pool_length=pool_length)
    return {k: float(res.lc) for k, res in fit.models.items()}


def lc_bias(rows: Sequence[dict], lc: dict[str, float] | None = None) -> dict[str, Any] | None:
    """``LC - TQ`` against ``Δwords = length - ref_length`` (the policy's mean words minus the reference answers'
    mean), over ``rows``: per method the mean of both, and the least-squares line over all runs (``slope`` per
    word with its standard error, ``intercept``, Pearson ``r``, ``mean_abs``: the mean ``|LC - TQ|``). ``lc``: ``{run key: LC}`` of another estimator
    (:func:`joint_lc`) in place of each row's own ``lc``, over the rows it has. ``None`` with fewer than 3 runs
    or one length."""
    use = [r for r in rows if all(k in r for k in ("lc", "tq", "length", "ref_length"))
           and (lc is None or r.get("key") in lc)]
    x = np.array([r["length"] - r["ref_length"] for r in use])
    y = np.array([(r["lc"] if lc is None else lc[r["key"]]) - r["tq"] for r in use])
    if len(use) < 3 or np.ptp(x) == 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(((x - x.mean()) ** 2).sum()))
    methods = {m: {"runs": sum(r["method"] == m for r in use),
                   "words": float(np.mean([xi for xi, r in zip(x, use) if r["method"] == m])),
                   "lc_minus_tq": float(np.mean([yi for yi, r in zip(y, use) if r["method"] == m]))}
               for m in dict.fromkeys(r["method"] for r in use)}
    r = float(np.corrcoef(x, y)[0, 1]) if np.ptp(y) > 0 else math.nan
    return {"runs": len(use), "slope": float(slope), "slope_se": se, "intercept": float(intercept), "r": r,
            "mean_abs": float(np.abs(y).mean()), "methods": methods}


def ended_cells(rows: Sequence[dict], method: str) -> dict[Cell, dict[str, Any]]:
    """Per cell of ``method``: the mean share of answers that ended before the cap over the runs that recorded it
    (and its lowest and highest run), and, over the runs probed at twice the cap, the mean share ended within
    the cap and within twice it."""
    out: dict[Cell, dict[str, Any]] = {}
    for r in sorted((r for r in rows if r["method"] == method), key=lambda r: cell_order(cell_of(r))):
        e = out.setdefault(cell_of(r), {"runs": 0, "ended": [], "probed": [], "at_cap": [], "at_2cap": []})
        e["runs"] += 1
        if "ended" in r:
            e["ended"].append(r["ended"])
        if r.get("cap_probe"):
            e["at_cap"].append(r["cap_probe"]["ended_at_cap"])
            e["at_2cap"].append(r["cap_probe"]["ended_at_2cap"])
    return {c: {"runs": e["runs"], "ended": float(np.mean(e["ended"])) if e["ended"] else None,
                "ended_min": min(e["ended"], default=None), "ended_max": max(e["ended"], default=None),
                "probed": len(e["at_cap"]), "ended_at_cap": float(np.mean(e["at_cap"])) if e["at_cap"] else None,
                "ended_at_2cap": float(np.mean(e["at_2cap"])) if e["at_2cap"] else None} for c, e in out.items()}
