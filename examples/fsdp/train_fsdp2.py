"""A minimal preference-training loop over adadpo's core, with the model sharded by PyTorch FSDP2.

What a user of a framework other than TRL (or of none) would copy: the model comes from transformers, the
sharding from ``torch.distributed.fsdp.fully_shard``, the loss from ``adadpo.preference_loss``; nothing else.

    torchrun --nproc_per_node 2 examples/fsdp/train_fsdp2.py --model DIR --data pairs.jsonl --loss dpo --balance
    python examples/fsdp/train_fsdp2.py ...          # one process, unsharded, same global batch

The one thing FSDP changes for the chunked head: every parameter is a sharded DTensor except inside the
forward of the FSDP unit that owns it. So :class:`PairLogpsModel` computes the LM head *in its own forward*
(``adadpo.linear_sequence_logps`` on the last hidden state and the head weight, a chunk of tokens at a time,
no ``[2B, T, V]`` logits), and :func:`shard` makes it the root unit, which owns the embeddings, the final norm
and the head (tied or not) and is gathered for its whole forward. Each decoder layer is its own unit.

Each process takes ``global_batch / world_size`` pairs of every step's ``global_batch``; FSDP averages the
gradients over processes, so two processes train as one process with the whole batch. ``--reference``:
``live`` (a frozen, sharded copy of the initial policy, run every step), ``precomputed`` (the initial policy's
sums, computed in one pass before training) or ``none`` (reference-free losses: simpo, cpo, orpo).
Data: a JSON-lines file of ``{"prompt", "chosen", "rejected"}`` strings.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

import adadpo


class PairLogpsModel(torch.nn.Module):
    """A causal LM as ``(input_ids, attention_mask, labels) [2B, T] -> adadpo.SequenceLogps`` (``[2B]`` sums
    of ``log p(y_t)`` over the tokens whose label is not -100, and their counts), the LM head chunked."""

    def __init__(self, lm: torch.nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> adadpo.SequenceLogps:
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
        head = self.lm.get_output_embeddings()  # gathered here: this module is the FSDP unit that owns it
        return adadpo.linear_sequence_logps(hidden, head.weight, labels, bias=head.bias)


def shard(model: PairLogpsModel, frozen: bool = False) -> PairLogpsModel:
    """FSDP2: one unit per decoder layer, then the root (embeddings, final norm, LM head). The root stays
    gathered from its forward to its backward (torch's default); a ``frozen`` model (the reference) has no
    backward, so its root is resharded after the forward instead of holding the full embeddings and head."""
    for layer in model.lm.base_model.layers:
        fully_shard(layer)
    fully_shard(model, reshard_after_forward=True if frozen else None)
    return model


def load(path: str, device: torch.device, sharded: bool, trainable: bool = True) -> PairLogpsModel:
    from transformers import AutoModelForCausalLM

    model = PairLogpsModel(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)).to(device)
    model.requires_grad_(trainable)
    return shard(model, frozen=not trainable) if sharded else model


def collate(rows: list[dict], tokenizer, device: torch.device) -> dict[str, torch.Tensor]:
    """``B`` pairs -> ``[2B, T]`` input ids, attention mask and labels (chosen rows first, then rejected; the
    prompt and the padding labelled -100), right-padded."""
    seqs = []
    for side in ("chosen", "rejected"):
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            response = tokenizer(row[side], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            seqs.append((prompt + response, [-100] * len(prompt) + response))
    width = max(len(ids) for ids, _ in seqs)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in seqs], device=device)
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in seqs], device=device)
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in seqs], device=device)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train(model_path: str, data: str, out: str, loss: str = "dpo", balance: bool = False, beta: float = 0.1,
          reference: str = "live", steps: int = 4, global_batch: int = 4, lr: float = 1e-3) -> list[float]:
    """Train ``steps`` steps; write ``out/losses.json`` and the final model (rank 0); return the losses
    (each the mean over every process's pairs)."""
    from transformers import AutoTokenizer

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    spec = adadpo.LossSpec(loss, beta=beta, balance=adadpo.Balance() if balance else None)
    if global_batch % world:
        raise ValueError(f"--global-batch {global_batch} must be a multiple of the number of processes, {world}")
    if (reference == "none") == spec.needs_reference:
        raise ValueError(f"--reference {reference!r} does not fit --loss {loss!r}: dpo, rdpo and ipo need live "
                         f"or precomputed, simpo, cpo and orpo take none")
    sharded = world > 1
    if sharded and not dist.is_initialized():
        dist.init_process_group()  # gloo on CPU, nccl on GPUs
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = [json.loads(line) for line in Path(data).read_text().splitlines() if line.strip()]
    if len(rows) < steps * global_batch:
        raise ValueError(f"{data} has {len(rows)} pairs; --steps {steps} x --global-batch {global_batch} needs "
                         f"{steps * global_batch}")
    local = global_batch // world
    batches = [rows[s * global_batch + rank * local:][:local] for s in range(steps)]  # this process's pairs

    policy = load(model_path, device, sharded)
    ref_model = load(model_path, device, sharded, trainable=False) if reference != "none" else None
    ref_sums = []
    if reference == "precomputed":  # one pass before training, then no reference model in memory
        with torch.no_grad():
            ref_sums = [ref_model(**collate(b, tokenizer, device)).logps for b in batches]
        ref_model = None
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)

    losses = []
    for step, batch in enumerate(batches):
        inputs = collate(batch, tokenizer, device)
        ref = None
        if ref_model is not None:
            with torch.no_grad():
                ref = ref_model(**inputs).logps
        elif ref_sums:
            ref = ref_sums[step]
        pairs = policy(**inputs).pairs(ref)
        result = adadpo.preference_loss(spec, pairs)
        result.loss.backward()  # FSDP reduce-scatters the gradients, averaged over processes
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        logged = result.loss.detach().clone()
        if sharded:
            dist.all_reduce(logged, op=dist.ReduceOp.AVG)
        losses.append(logged.item())

    save(policy, out, rank, sharded)
    if rank == 0:
        tokenizer.save_pretrained(out)
        (Path(out) / "losses.json").write_text(json.dumps(losses))
    return losses


def save(model: PairLogpsModel, out: str, rank: int, sharded: bool) -> None:
    """The full weights, gathered from the shards, saved by rank 0 with ``save_pretrained``."""
    state = model.lm.state_dict()
    if sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(model.lm, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if rank == 0:
        model.lm.save_pretrained(out, state_dict=state)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a causal LM directory or Hub id")
    p.add_argument("--data", required=True, help="JSON lines of {prompt, chosen, rejected}")
    p.add_argument("--out", required=True)
    p.add_argument("--loss", default="dpo", choices=sorted(adadpo.LOSSES))
    p.add_argument("--balance", action="store_true", help="AdaDPO: balance the gradients (adadpo.Balance())")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--reference", default="live", choices=["live", "precomputed", "none"])
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--global-batch", type=int, default=4, help="pairs per step over all processes")
    p.add_argument("--lr", type=float, default=1e-3)
    a = p.parse_args(argv)
    train(a.model, a.data, a.out, a.loss, a.balance, a.beta, a.reference, a.steps, a.global_batch, a.lr)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
