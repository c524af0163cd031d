"""Peak memory per process: one process unsharded against two processes sharded by FSDP2, on the same model.

    python benchmarks/fsdp_memory.py                     # SmolLM2-135M-Instruct from the local cache
    python benchmarks/fsdp_memory.py --model tiny --steps 2 --no-write   # a synthetic Llama, seconds
    python benchmarks/fsdp_memory.py --model-dir DIR     # any causal LM directory

Both runs train the same steps of ``examples/fsdp/train_fsdp2.py``'s loop (DPO, balanced, live reference:
the policy and the reference both sharded when there are two processes; the chunked head) on the same global
batch: one process with all of it, two processes (``torchrun``, gloo) with half each. Every process reports:

- **model state**: the bytes of the parameters, gradients and AdamW moments it holds (policy and reference;
  its shards under FSDP2), counted from the tensors;
- **training peak**: its high-water RSS over the training steps minus its RSS before the model was loaded
  (the kernel's high-water mark is reset once the models are built, so loading's transient full copy is not
  counted; the first step, where AdamW allocates its moments, is);
- **step peak**: the high-water RSS of one later step above the RSS just before it (activations, gathered
  layers, head chunks).

The figures are ratios, two processes over one; with ``--write`` the table replaces the block between
``<!-- measured:fsdp:begin -->`` and ``<!-- measured:fsdp:end -->`` in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import MMAP_THRESHOLD, ROOT, _status_kib, machine, make_pairs, release_free_memory, table

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- measured:fsdp:begin -->", "<!-- measured:fsdp:end -->"
MiB = 1 << 20


def _state_bytes(models, optimizer) -> int:
    """Bytes of the parameters, gradients and optimizer state held by this process (local shards)."""
    import torch

    def local(t):
        return t.to_local() if hasattr(t, "to_local") else t

    seen, total = set(), 0
    tensors = [p for m in models for p in m.parameters()] + [p.grad for m in models for p in m.parameters()
                                                             if p.grad is not None]
    tensors += [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        t = local(t)
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


def worker(model_dir: str, data: str, steps: int, global_batch: int) -> None:
    """One process of a run: build, train ``steps`` steps, print its figures as one JSON line."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(ROOT / "examples" / "fsdp"))
    import train_fsdp2
    from transformers import AutoTokenizer

    import adadpo

    torch.set_num_threads(1)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    release_free_memory()
    base = _status_kib("VmRSS")
    device = torch.device("cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines()]
    local = global_batch // world
    batches = [train_fsdp2.collate(rows[s * global_batch + rank * local:][:local], tokenizer, device) for s in range(steps)]
    policy = train_fsdp2.load(model_dir, device, world > 1)
    reference = train_fsdp2.load(model_dir, device, world > 1, trainable=False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-5)
    spec = adadpo.LossSpec("dpo", beta=0.1, balance=adadpo.Balance())

    def step(inputs):
        with torch.no_grad():
            ref = reference(**inputs).logps
        adadpo.preference_loss(spec, policy(**inputs).pairs(ref)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # keep the gradients' memory: what a step holds

    release_free_memory()
    Path("/proc/self/clear_refs").write_text("5")
    start = time.perf_counter()
    for inputs in batches[:-1]:
        step(inputs)
    release_free_memory()
    before = _status_kib("VmRSS")
    step(batches[-1])
    seconds = time.perf_counter() - start
    step_peak = (_status_kib("VmHWM") - before) * 1024
    figures = {"rank": rank, "world": world, "state": _state_bytes([policy, reference], optimizer),
               "training_peak": (_status_kib("VmHWM") - base) * 1024, "step_peak": step_peak, "seconds": seconds}
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, figures)
        dist.destroy_process_group()
    else:
        gathered = [figures]
    if rank == 0:
        print(json.dumps(gathered))


def run(nproc: int, model_dir: str, data: Path, steps: int, global_batch: int) -> list[dict]:
    script = [str(Path(__file__).resolve()), "--worker", "--model-dir", model_dir, "--data", str(data),
              "--steps", str(steps), "--global-batch", str(global_batch)]
    launcher = [sys.executable] if nproc == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(nproc)]
    env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), **os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT / "src")}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([*launcher, *script], capture_output=True, text=True, env=env, timeout=3600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{nproc} process(es) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def model_dir_of(args: argparse.Namespace, tmp: Path) -> tuple[str, str]:
    """The model directory and a one-line description of it."""
    if args.model_dir:
        return args.model_dir, args.model_dir
    if args.model == "tiny":
        from _common import save_model

        save_model(tmp / "model", hidden=256, layers=4, vocab=32000)
        return str(tmp / "model"), "synthetic Llama (hidden 256, 4 layers, V = 32000, untied), fp32"
    from adadpo.bench.worlds.smollm2.model import prepare_model

    return prepare_model("smollm2-gguf"), ("SmolLM2-135M-Instruct (hidden 576, 30 layers, V = 49152, tied "
                                           "embeddings), fp32")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=["smollm2", "tiny"], default="smollm2")
    p.add_argument("--model-dir", help="a causal LM directory (instead of --model)")
    p.add_argument("--steps", type=int, default=3, help="training steps per run (the last one is the step peak)")
    p.add_argument("--global-batch", type=int, default=4, help="pairs per step over all processes")
    p.add_argument("--no-write", action="store_true", help="print only; do not rewrite docs/performance.md")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)  # the workers' setting, reported by machine()
    if args.worker:
        worker(args.model_dir, args.data, args.steps, args.global_batch)
        return

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir, about = model_dir_of(args, tmp)
        rows = make_pairs(args.steps * args.global_batch, words=(24, 48))
        (tmp / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        one = run(1, model_dir, tmp / "pairs.jsonl", args.steps, args.global_batch)
        two = run(2, model_dir, tmp / "pairs.jsonl", args.steps, args.global_batch)

    def cells(key: str) -> list[str]:
        a, b = one[0][key], max(r[key] for r in two)
        return [f"{a / MiB:.0f}", f"{b / MiB:.0f}", f"{b / a:.2f}x"]

    rows = [["model state (params, grads, AdamW; policy + reference)", *cells("state")],
            ["training peak RSS (above the RSS before loading)", *cells("training_peak")],
            ["one step's peak RSS (above the RSS before it)", *cells("step_peak")]]
    text = "\n".join([
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; `python benchmarks/fsdp_memory.py"
        f"{' --model tiny' if args.model == 'tiny' and not args.model_dir else ''}`.",
        "",
        f"Model: {about}. DPO, balanced, live reference, {args.global_batch} pairs per step in all, "
        f"{args.steps} steps; two processes: FSDP2 (one unit per decoder layer, the root), gloo, "
        f"{args.global_batch // 2} pairs each. Per process (two processes: the larger of the two).",
        "",
        table(["per process", "1 process (MiB)", "2 processes, FSDP2 (MiB)", "2 / 1"], rows),
    ])
    print(text)
    if not args.no_write:
        doc = DOC.read_text()
        if BEGIN not in doc or END not in doc:
            raise SystemExit(f"{DOC} has no {BEGIN} ... {END} block to replace")
        head, rest = doc.split(BEGIN, 1)
        DOC.write_text(head + BEGIN + "\n" + text + "\n" + END + rest.split(END, 1)[1])


if __name__ == "__main__":
    main()
