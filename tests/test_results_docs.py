"""The figures quoted in README.md and docs/results/README.md are the committed results' own: every number
checked here is recomputed from the sweeps' ``summary.json``, ``results.jsonl`` and ``timing.jsonl`` and must
appear in the docs exactly as the docs print it (whitespace normalized, since Markdown wraps lines)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from adadpo.bench.report import _pct, headline_table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
#: The oracle sweeps of the headline table, by their name there.
SWEEPS = {"dpo": "dpo", "dpo-eta2": "dpo-eta2", **{f: f"families/{f}" for f in ("rdpo", "ipo", "simpo", "cpo", "orpo")}}


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", path.read_text())


def _summary(sweep: str) -> dict:
    return json.loads((RESULTS / sweep / "summary.json").read_text())


def _by_metric(s: dict) -> dict[tuple[str, str, str], dict]:
    return {(c["base"], c["cand"], c["metric"]): c for c in s["comparisons"]}


def _share(c: dict) -> str:
    return f"{_pct(c['share_higher'])} ({c['wins']}/{c['ties']}/{c['losses']})"


def _ci(c: dict) -> str:
    return f"{c['pooled_diff']:+.3f} [{c['pooled_lo']:+.3f}, {c['pooled_hi']:+.3f}]"


def _minutes(sweep: str) -> float:
    return sum(json.loads(line)["seconds"] for line in (RESULTS / sweep / "timing.jsonl").open()) / 60


def _cell_mean(s: dict, method: str, metric: str) -> float:
    return float(np.mean([cell[metric] for cell in s["cells"][method].values()]))


def test_headline_md_is_generated_from_the_summaries():
    dirs = [RESULTS / d for d in (*SWEEPS.values(), "ablation")]
    assert (RESULTS / "headline.md").read_text().strip() == headline_table(dirs).strip()


@pytest.mark.parametrize("doc", ["README.md", "docs/results/README.md"])
def test_headline_tables_quote_the_summaries(doc):
    text = _text(ROOT / doc).replace("W/T/L ", "")
    for name, sweep in SWEEPS.items():
        s = _summary(sweep)
        for (base, cand, metric), c in _by_metric(s).items():
            if metric != "lc":
                continue
            by = _by_metric(s)
            shares = " | ".join(_share(by[(base, cand, m)]) for m in ("lc", "lc_minus_wr", "tq"))
            tq = _ci(by[(base, cand, "tq")])
            if doc == "README.md":
                seeds = s["runs"] // (2 * c["cells"])
                row = f"| {c['cells']} x {seeds} | {shares} | {tq} |"
            else:
                best = " | ".join(f"{s['best'][base][m]['mean']:.3f} / {s['best'][cand][m]['mean']:.3f}"
                                  for m in ("lc", "tq"))
                row = f"| {name} | {cand} vs {base} | {c['cells']} | {shares} | {tq} | {best} |"
            assert row in text, f"{doc}: expected the row {row!r}"


def test_ablation_table_quotes_the_summary():
    text = _text(RESULTS / "README.md")
    s = _summary("ablation")
    by = _by_metric(s)
    for (base, cand, metric), c in by.items():
        if base != "AdaDPO" or metric != "lc":
            continue
        label = cand.replace("norm=", "normalize=").replace("kappa=", "κ = ")
        tq = by[(base, cand, "tq")]
        row = (f"| {label} | {_ci(c)} | {_ci(tq)} | {by[(base, cand, 'lc_minus_wr')]['pooled_diff']:+.3f} "
               f"| {tq['wins']} / {tq['losses']} |")
        assert row in text, f"expected the row {row!r}"


def test_wall_times_are_the_measured_ones():
    text = _text(RESULTS / "README.md")
    for sweep in ("dpo", "dpo-eta2", "ablation"):
        runs = sum(json.loads(line)["runs"] for line in (RESULTS / sweep / "timing.jsonl").open())
        assert f"| {runs} | {_minutes(sweep):.1f} min |" in text
    families = [_minutes(f"families/{f}") for f in ("rdpo", "ipo", "simpo", "cpo", "orpo")]
    assert f"| 5 x 72 | {min(families):.1f}-{max(families):.1f} min each |" in text
    total = sum(_minutes(d) for d in (*SWEEPS.values(), "ablation"))
    quoted = f"about {round(total)} min"
    for doc in ("README.md", "docs/results/README.md", "docs/results/reproduce.sh"):
        assert quoted in _text(ROOT / doc), f"{doc}: expected {quoted!r} (sum of the timing.jsonl files)"


def test_prose_figures_quote_the_results():
    text = _text(RESULTS / "README.md")
    dpo = _summary("dpo")
    mean = {(m, k): _cell_mean(dpo, m, k)
            for m in ("DPO", "AdaDPO") for k in ("delta_chosen", "length", "kl", "lc", "tq")}
    rows = [json.loads(line) for line in (RESULTS / "dpo" / "results.jsonl").open()]
    quoted = [
        f"moves by {mean['AdaDPO', 'delta_chosen']:.2f} nats under AdaDPO against "
        f"{mean['DPO', 'delta_chosen']:.2f} under DPO",
        f"({mean['AdaDPO', 'length']:.1f} words against DPO's {mean['DPO', 'length']:.1f}; the reference says "
        f"{np.mean([r['ref_length'] for r in rows]):.1f})",
        f"{mean['DPO', 'kl'] / mean['AdaDPO', 'kl']:.1f}x less (KL {mean['AdaDPO', 'kl']:.2f} against "
        f"{mean['DPO', 'kl']:.2f} nats)",
        f"LC exceeds TQ by {mean['DPO', 'lc'] - mean['DPO', 'tq']:.3f} on average for DPO and by "
        f"{mean['AdaDPO', 'lc'] - mean['AdaDPO', 'tq']:.3f} for AdaDPO",
        f"(Pearson {dpo['tracking']['r_lc_tq']:.2f} against {dpo['tracking']['r_wr_tq']:.2f})",
    ]
    simpo = _summary("families/simpo")["cells"]["SimPO"]
    below = sum(cell["tq"] < 0.5 for cell in simpo.values())
    quoted.append(f"SimPO ({np.mean([c['length'] for c in simpo.values()]):.1f} words on average, TQ below 0.5 in "
                  f"{below} of its {len(simpo)} cells)")
    eta2 = _summary("dpo-eta2")["cells"]
    higher = sum(eta2["DPO"][k]["lc"] > eta2["AdaDPO"][k]["lc"] for k in eta2["DPO"])
    lc = _by_metric(_summary("dpo-eta2"))[("DPO", "AdaDPO", "lc")]
    quoted.append(f"DPO has the higher LC in {higher} of {len(eta2['DPO'])} cells, {lc['losses']} of them")
    for sweep, cand in (("dpo", "AdaDPO"), ("simpo", "AdaSimPO")):  # the real-model paragraph
        by = {c["metric"]: c for c in _summary(f"smollm2/superseded-world-v2/{sweep}")["comparisons"] if c["cand"] == cand}
        n = by["tq"]["cells"]
        higher = {m: round(by[m]["share_higher"] * n) for m in by}
        if sweep == "dpo":
            quoted.append(f"TQ higher in {higher['tq']}/{n} cells (mean {_ci(by['tq'])}), "
                          f"LC higher in {higher['lc']}/{n}, LC - WR enlarged in {higher['lc_minus_wr']}/{n}")
        else:
            quoted.append(f"LC higher in {higher['lc']}/{n} cells (mean {_ci(by['lc'])}), TQ in {higher['tq']}/{n} "
                          f"({_ci(by['tq'])})")
    for q in quoted:
        assert q in text, f"docs/results/README.md: expected {q!r}"


def test_readme_summary_quotes_the_results():
    text = _text(ROOT / "README.md")
    s = _summary("dpo")
    lc = _by_metric(s)[("DPO", "AdaDPO", "lc")]
    best = {m: s["best"][m]["lc"] for m in ("DPO", "AdaDPO")}
    cell = s["cells"]["DPO"][f"beta={best['DPO']['beta']:g},lr={best['DPO']['learning_rate']:g}"]
    kl = _cell_mean(s, "DPO", "kl") / _cell_mean(s, "AdaDPO", "kl")
    ablation = [c["pooled_diff"] for c in _summary("ablation")["comparisons"]
                if c["base"] == "AdaDPO" and c["metric"] in ("lc", "tq")]
    for q in (f"KL from the reference is {kl:.1f}x smaller",
              f"higher LC in only {round(lc['share_higher'] * lc['cells'])} of {lc['cells']} cells (best LC "
              f"{best['AdaDPO']['mean']:.3f} against {best['DPO']['mean']:.3f})",
              f"(LC {cell['lc']:.3f}, TQ {cell['tq']:.3f} in its best cell)",
              f"no choice beats the defaults by more than {max(ablation):.3f}"):
        assert q in text, f"README.md: expected {q!r}"


def _interval(d: dict) -> str:
    return f"{d['mean']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]"


#: The real-model study superseded by docs/results/smollm2/PLAN.md (issue 31): its grids and reading stay, labelled.
SUPERSEDED_V3 = RESULTS / "smollm2" / "superseded-world-v3"


def _smollm2_grids(root: Path = SUPERSEDED_V3) -> list[str]:
    """The real-model grids committed under ``root`` (each has a summary), not the gate."""
    return sorted(p.parent.name for p in root.glob("*/summary.json") if p.parent.name != "gate")


def test_superseded_smollm2_docs_quote_every_grid_against_the_untrained_model():
    """The superseded study's README gives, for every grid, both forms' pooled ΔTQ over the untrained model and
    the balanced - plain difference on TQ and LC, as the grid's summary has them, and the gate's figures."""
    grids = _smollm2_grids()
    assert grids == sorted(["dpo", "simpo", "ipo", "rdpo", "cpo", "orpo"])
    doc = _text(SUPERSEDED_V3 / "README.md").replace("**", "")
    assert doc.startswith("# Superseded"), "the superseded study's README must say so first"
    for grid in grids:
        s = _summary(f"smollm2/superseded-world-v3/{grid}")
        pooled = s["vs_untrained"]["pooled"]
        for c in s["comparisons"]:
            if c["metric"] != "tq":
                continue
            base, cand = c["base"], c["cand"]
            lc = _by_metric(s)[(base, cand, "lc")]
            for q in [_interval(pooled[base]["tq"]), _interval(pooled[cand]["tq"]), _ci(c), _ci(lc)]:
                assert q in doc, f"superseded-world-v3/README.md: expected {grid}'s {q!r}"
    gate = _summary("smollm2/superseded-world-v3/gate")["vs_untrained"]["gates"]["DPO"]
    quoted = f"ΔTQ {gate['d_tq']:+.3f} [{gate['lo']:+.3f}, {gate['hi']:+.3f}]"
    assert quoted in _text(SUPERSEDED_V3 / "gate" / "report.md")


def test_superseded_smollm2_families_md_is_generated_from_the_grids():
    """The superseded study's families.md is `python -m adadpo.bench.families` over its grids, in the docs'
    order, and its figure is there."""
    from adadpo.bench.families import families_table

    order = ["dpo", "simpo", "ipo", "rdpo", "cpo", "orpo"]
    assert sorted(order) == _smollm2_grids()
    text = (SUPERSEDED_V3 / "families.md").read_text()
    assert text.startswith(families_table([SUPERSEDED_V3 / g for g in order]) + "\n")
    assert (SUPERSEDED_V3 / "families.png").is_file() and "(families.png)" in text


def test_readme_quotes_the_superseded_study_per_seed():
    """README.md's table of the superseded study: one row per family, its per-seed intervals from the grid's
    summary (the plan's primary interval), and the superseded study is named as such."""
    readme = _text(ROOT / "README.md").replace("**", "")
    names = {"dpo": "DPO", "simpo": "SimPO", "ipo": "IPO", "rdpo": "R-DPO", "cpo": "CPO", "orpo": "ORPO"}
    assert "superseded-world-v3" in readme and "PLAN.md" in readme
    for grid in _smollm2_grids():
        e = _summary(f"smollm2/superseded-world-v3/{grid}")["evidence"]
        c = e["comparisons"][0]
        plain, balanced = (e["methods"][c[k]]["tq"]["per_seed"] for k in ("plain", "balanced"))
        row = (f"| {names[grid]} ({c['tq']['signs']['cells']}) | {_interval(plain)} | {_interval(balanced)} "
               f"| {_interval(c['tq']['per_seed'])} | {_interval(c['lc']['per_seed'])} "
               f"| {c['lc']['signs']['above']} / {c['lc']['signs']['below']} |")
        assert row in readme, f"README.md: expected the row {row!r}"


def test_the_study_plan_was_committed_before_its_grids():
    """PLAN.md exists and names every sweep file of the study; a grid of the study (a summary beside PLAN.md)
    was run from one of them."""
    plan = _text(RESULTS / "smollm2" / "PLAN.md")
    study = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "examples" / "smollm2").rglob("*.yaml"))
    assert len(study) == 8
    assert "examples/smollm2/*.yaml" in plan and "examples/smollm2/world-b/*.yaml" in plan
    for grid in _smollm2_grids(RESULTS / "smollm2") + _smollm2_grids(RESULTS / "smollm2" / "world-b"):
        assert any(Path(f).stem == grid for f in study), grid
