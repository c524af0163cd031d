"""``adadpo explain``: what AdaDPO does to a few example pairs, as numbers.

For each pair it prints the plain loss's imbalance ``rho = |G_l| / |G_w|`` (how many times harder the
rejected side is pushed than the chosen side is pulled, measured on the balanced probability ``P``),
the AdaDPO coefficients, and the gradient magnitudes ``|G| = |dL/dA| / P`` before and after balancing,
all computed with autograd through :func:`adadpo.preference_loss`.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import torch

from adadpo.cli.balance_args import OLD_NAMES, add_balance_arguments, balance_from_args
from adadpo.core.balance import Balance
from adadpo.core.losses import preference_loss
from adadpo.core.registry import example_params
from adadpo.core.spec import LOSSES

#: Option names of earlier releases (``--clip``, ``--level``, ...), accepted with a note (adadpo.cli.options).
RENAMED = OLD_NAMES


@dataclass(frozen=True)
class ExamplePair:
    name: str
    len_chosen: int
    len_rejected: int
    mean_logp_chosen: float  # abar_w: per-token mean log-prob under the policy
    mean_logp_rejected: float


EXAMPLES = (
    ExamplePair("tied", 20, 20, -1.0, -1.0),
    ExamplePair("ranked right", 20, 20, -0.8, -1.6),
    ExamplePair("well separated", 20, 20, -0.4, -2.5),
    ExamplePair("far apart", 20, 20, -0.2, -3.6),
    ExamplePair("ranked wrong", 20, 20, -1.8, -0.9),
    ExamplePair("long rejected", 10, 60, -0.8, -0.8),
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="show plain vs balanced coefficients and gradients on example pairs (default)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", default="dpo", choices=[*LOSSES, "all"], help="loss family (default: dpo)")
    p.add_argument("--beta", type=float, default=0.1, help="the loss's beta (default: 0.1)")
    add_balance_arguments(p)  # --balance_level, ..., --balance_clip: adadpo.Balance's fields, named as in train


def _grad_magnitudes(loss: str, pairs: tuple[ExamplePair, ...], beta: float, balance: Balance | None, level: str):
    """Run the loss on the pairs; return its output and ``log |G_w|``, ``log |G_l|`` with ``|G| = |dL/dA| / P``,
    ``P`` the geometric-mean token probability (``level="token"``) or the sequence probability."""
    T_w = torch.tensor([p.len_chosen for p in pairs], dtype=torch.float64)
    T_l = torch.tensor([p.len_rejected for p in pairs], dtype=torch.float64)
    A_w = (torch.tensor([p.mean_logp_chosen for p in pairs], dtype=torch.float64) * T_w).requires_grad_(True)
    A_l = (torch.tensor([p.mean_logp_rejected for p in pairs], dtype=torch.float64) * T_l).requires_grad_(True)
    kw = dict(chosen_logps=A_w, rejected_logps=A_l, chosen_lengths=T_w, rejected_lengths=T_l, beta=beta,
              **example_params(loss))  # rdpo's length_alpha: its declared example
    if LOSSES[loss].needs_reference:  # the policy has moved a little from the reference on both sides
        kw.update(ref_chosen_logps=A_w.detach() - 0.05 * T_w, ref_rejected_logps=A_l.detach() + 0.05 * T_l)
    out = preference_loss(loss, **kw, balance=balance)
    g_w, g_l = torch.autograd.grad(out.losses.sum(), (A_w, A_l))
    log_p_w = A_w.detach() / T_w if level == "token" else A_w.detach()
    log_p_l = A_l.detach() / T_l if level == "token" else A_l.detach()
    # in log space, to survive sequence-level probabilities
    return out, torch.log(g_w.abs()) - log_p_w, torch.log(g_l.abs()) - log_p_l


def _fmt_log(x: float) -> str:
    """A positive number given by its log, compactly (works beyond float range)."""
    if not math.isfinite(x):
        return "0" if x < 0 else "inf"
    if abs(x) < math.log(1e4) and x > math.log(1e-3):
        return f"{math.exp(x):.3g}"
    exp10 = x / math.log(10)
    e = math.floor(exp10)
    return f"{10 ** (exp10 - e):.2f}e{e:+d}"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def explain(loss: str, beta: float, balance: Balance, pairs: tuple[ExamplePair, ...] = EXAMPLES) -> str:
    """The table for one loss: plain vs AdaDPO gradient magnitudes on ``pairs``."""
    _, pg_w, pg_l = _grad_magnitudes(loss, pairs, beta, None, balance.level)
    bal, bg_w, bg_l = _grad_magnitudes(loss, pairs, beta, balance, balance.level)
    headers = ["pair", "T_w", "T_l", "abar_w", "abar_l", "rho (plain)", "c_w", "c_l",
               "|G_w| plain", "|G_l| plain", "|G_w| ada", "|G_l| ada", "|G_l|/|G_w| ada"]
    rows = [
        [p.name, str(p.len_chosen), str(p.len_rejected), f"{p.mean_logp_chosen:.2f}", f"{p.mean_logp_rejected:.2f}",
         _fmt_log(float(pg_l[i] - pg_w[i])), f"{bal.coef_chosen[i]:.3g}", f"{bal.coef_rejected[i]:.3g}",
         _fmt_log(float(pg_w[i])), _fmt_log(float(pg_l[i])), _fmt_log(float(bg_w[i])), _fmt_log(float(bg_l[i])),
         _fmt_log(float(bg_l[i] - bg_w[i]))]
        for i, p in enumerate(pairs)
    ]
    clip = "off" if math.isinf(balance.clip) else f"{balance.clip:g}"
    prob = "geometric-mean token" if balance.level == "token" else "sequence"
    head = (
        f"{loss}: beta={beta:g}; AdaDPO with level={balance.level}, normalize={balance.normalize}, "
        f"placement={balance.placement}, clip kappa={clip}\n"
        "rho = |G_l| / |G_w|: how many times harder the plain loss pushes the rejected response down than it\n"
        f"pulls the chosen one up; |G| = |dL/dP| with P the {prob} probability.\n"
        "AdaDPO's coefficients bring the ratio to 1 (to rho / kappa where the clip binds).\n"
    )
    return head + _table(headers, rows)


def run(args: argparse.Namespace) -> int:
    balance = balance_from_args(args)
    losses = list(LOSSES) if args.loss == "all" else [args.loss]
    print("\n\n".join(explain(loss, args.beta, balance) for loss in losses))
    return 0
