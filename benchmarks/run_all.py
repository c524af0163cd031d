"""Run the four benchmarks and write their tables into docs/performance.md.

    python benchmarks/run_all.py [--quick] [--only NAME ...] [--no-write]
    python benchmarks/run_all.py --model smollm2 [--quick] [--no-write]

Runs, one after the other: balance_overhead.py, trainer_step.py, chunked_logps.py, reference.py (each in
its own process, with its defaults, or fewer repeats with ``--quick``), prints their tables, and replaces
the part of ``docs/performance.md`` between the ``<!-- measured:begin -->`` and ``<!-- measured:end -->``
markers with the tables, the goals and the verdicts, the machine and the command. The prose around the
markers (what limits each ratio) is not touched.

``--model smollm2`` (opt-in; about 20 minutes on 2 cores) runs instead the benchmarks that have a
real-model configuration, balance_overhead.py and trainer_step.py with ``--configs smollm2`` (the model
from the local cache, see ``_common.MODELS``), and writes their block, between
``<!-- measured:smollm2:begin -->`` and ``<!-- measured:smollm2:end -->``; the synthetic block is left alone.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

HERE = Path(__file__).resolve().parent
DOC = C.ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- measured:begin -->", "<!-- measured:end -->"
QUICK = {
    "balance_overhead": ["--repeats", "3", "--steps", "5"],
    "trainer_step": ["--repeats", "3", "--steps", "5"],
    "chunked_logps": ["--repeats", "1"],
    "reference": ["--repeats", "3", "--steps", "5"],
}
#: The benchmarks with a real-model configuration (``--model``), and their ``--quick`` options there.
MODEL_BENCHMARKS = {"balance_overhead": ["--repeats", "1", "--steps", "1"],
                    "trainer_step": ["--repeats", "1", "--steps", "1", "--no-memory"]}
TITLES = {"balance_overhead": "1. Balanced vs plain loss", "trainer_step": "2. AdaDPOTrainer vs stock DPOTrainer",
          "chunked_logps": "3. Chunked log-probs vs full logits (and TRL, Liger)",
          "reference": "4. Precomputed vs live reference"}


def markers(model: str | None) -> tuple[str, str]:
    """The begin and end markers of the block that a run (synthetic, or on ``model``) rewrites."""
    return (BEGIN, END) if model is None else (f"<!-- measured:{model}:begin -->", f"<!-- measured:{model}:end -->")


def run(name: str, extra: list[str], json_dir: Path) -> str:
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--json-dir", str(json_dir), *extra]
    print(f"$ {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**C.os.environ, "PYTHONPATH": str(C.ROOT / "src")})
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    table = proc.stdout.strip()
    print(table, flush=True)
    return table


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary(figures: dict[str, Any]) -> list[list[str]]:
    """One row per goal of the issue: what was measured and whether it meets the goal."""
    rows = []
    if "balance_overhead" in figures:
        for config, res in figures["balance_overhead"]["results"].items():
            worst = max(res, key=lambda k: res[k]["ratio"])
            rows.append([f"1. balanced / plain step, six losses ({config})", "<= 1.02x",
                         f"{min(v['ratio'] for v in res.values()):.3f}-{res[worst]['ratio']:.3f}x (worst: {worst})",
                         verdict(res[worst]["ratio"] <= 1.02)])
    if "trainer_step" in figures:
        for config, res in figures["trainer_step"]["results"].items():
            key = "AdaDPOTrainer dpo plain (chunked)"
            bal = res["AdaDPOTrainer dpo balanced (chunked)"]["ratio"]
            rows.append([f"2. AdaDPOTrainer / stock DPOTrainer step ({config})", "<= 1.00x",
                         f"plain {res[key]['ratio']:.3f}x, balanced {bal:.3f}x", verdict(max(res[key]["ratio"], bal) <= 1.0)])
    if "chunked_logps" in figures:
        data = figures["chunked_logps"]
        by = {(r["T"], r["method"]): r for r in data["rows"]}
        lengths = sorted({r["T"] for r in data["rows"]})
        t0 = lengths[0]
        if (t0, "chunked") in by:
            c = by[t0, "chunked"]
            rows.append([f"3a. chunked / full peak memory, T={t0}", "<= 0.10x", f"{c['mem_ratio']:.3f}x",
                         verdict(c["mem_ratio"] <= 0.10)])
        if "chunked" in data.get("growth", {}):
            g = data["growth"]["chunked"]
            rows.append([f"3b. chunked peak growth T={t0} -> {lengths[-1]}", "<= 1.10x", (f"{g:.2f}x (full: "
                         f"{data['growth'].get('full', float('nan')):.2f}x)"), verdict(g <= 1.10)])
            h = data.get("growth_without_hidden_grad", {}).get("chunked")
            if h is not None:
                rows.append(["3b'. the same without the [2B, T, H] input gradient (returned by every method)", "<= 1.10x",
                             f"{h:.2f}x (full: {data['growth_without_hidden_grad'].get('full', float('nan')):.2f}x)",
                             verdict(h <= 1.10)])
        times = [by[t, "chunked"]["time_ratio"] for t in lengths if (t, "chunked") in by and by[t, "chunked"]["time_ratio"]]
        if times:
            rows.append(["3c. chunked / full time", "<= 1.15x", ", ".join(f"T={t}: {x:.2f}x" for t, x in zip(lengths, times)),
                         verdict(max(times) <= 1.15)])
    if "reference" in figures:
        for config, res in figures["reference"]["results"].items():
            worst = max(v["ratio"] for v in res.values())
            rows.append([f"4. precomputed / live reference step ({config})", "<= 0.75x",
                         ", ".join(f"{k}: {v['ratio']:.3f}x" for k, v in res.items()), verdict(worst <= 0.75)])
    return rows


def block(figures: dict[str, Any], tables: dict[str, str], commands: dict[str, str], command: str,
          model: str | None) -> str:
    """The measured block: date and machine, the command, the goals, and each benchmark's table."""
    begin, end = markers(model)
    machine = next((f["machine"] for f in figures.values() if f.get("machine")), C.machine())
    body = [begin, "", (f"Measured {datetime.date.today().isoformat()} on: {machine} (torch threads per "
            "benchmark as printed)."), "", f"Command: `{command}`", "", "### Goals", "",
            C.table(["ratio", "goal", "measured", "verdict"], summary(figures)), ""]
    for name, text in tables.items():
        title = TITLES[name] + ("" if model is None else f" ({model})")
        body += [f"### {title}", "", f"`{commands[name]}`", "", text, ""]
    body.append(end)
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a rough check, not for the docs)")
    parser.add_argument("--only", nargs="+", choices=list(QUICK), default=None)
    parser.add_argument("--model", choices=list(C.MODELS), default=None,
                        help="run the real-model configuration of the benchmarks that have one, and write its block")
    parser.add_argument("--no-write", action="store_true", help=f"print only; leave {DOC.relative_to(C.ROOT)} alone")
    args = parser.parse_args()
    available = list(QUICK) if args.model is None else list(MODEL_BENCHMARKS)
    only = args.only or available
    if args.model is not None and not set(only) <= set(MODEL_BENCHMARKS):
        parser.error(f"--model runs only {', '.join(MODEL_BENCHMARKS)}")
    tables: dict[str, str] = {}
    figures: dict[str, Any] = {}
    commands: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in only:
            extra = [] if args.model is None else ["--configs", args.model]
            quick = QUICK[name] if args.model is None else MODEL_BENCHMARKS[name]
            commands[name] = " ".join(["python", f"benchmarks/{name}.py", *extra])
            tables[name] = run(name, extra + (quick if args.quick else []), Path(tmp))
            figures[name] = json.loads((Path(tmp) / f"{name}.json").read_text())
    command = "python benchmarks/run_all.py" + (f" --model {args.model}" if args.model else "") + (
        " --quick" if args.quick else "") + (f" --only {' '.join(only)}" if only != available else "")
    text = block(figures, tables, commands, command, args.model)
    print("\n" + text)
    if args.no_write:
        return
    begin, end = markers(args.model)
    doc = DOC.read_text() if DOC.exists() else f"# Performance\n\n{begin}\n{end}\n"
    if begin not in doc or end not in doc:
        raise SystemExit(f"{DOC} has no {begin} ... {end} block to replace")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    DOC.write_text(head + text + tail)
    print(f"\nwrote {DOC.relative_to(C.ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
