"""The oracle world: prompts with known target sets, true quality, a length-biased judge, noisy demonstrations.

A prompt names a set ``K`` of target words (2 to 6); a response is a sequence of words. Everything an
evaluation needs is known exactly here:

* true quality ``q(x, y) = F1(set(y), K)``: precision punishes filler, recall punishes omissions, so the best
  answer is ``K`` itself, short and complete; quality does not depend on length as such;
* the judge, biased toward length like real LLM judges (:mod:`adadpo.bench.judge`, with this config's
  ``tau``, ``eta`` and ``length_scale``)::

      P(a beats b) = sigmoid(tau * (q_a - q_b) + eta * (len_a - len_b) / L),   eta > 0

  and with ``eta = 0`` the *true-quality* judge;
* noisy demonstrations: each target is missed with probability ``miss_prob``, a geometric number of filler
  words (mean ``filler_mean``) is mixed in, the order is shuffled.

Pure Python and numpy; the policy side lives in :mod:`adadpo.bench.worlds.oracle.policy`.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

#: Content words of the world; a prompt's targets and any filler are drawn from the first ``n_words``.
WORDS = (
    "apple river stone cloud tiger candle violin forest silver garden rocket pepper marble ocean lemon "
    "hammer pillow castle spider meadow engine butter falcon anchor cactus wallet tunnel orchid saddle "
    "button glacier comet harbor lantern mirror noodle parrot quartz ribbon walnut"
).split()
#: Ends the prompt; the response starts after it.
PROMPT_END = "="


@dataclass(frozen=True)
class WorldConfig:
    """Everything that defines the world, the reference policy and the preference data (the cache key).

    Judge: ``tau`` (weight of true quality), ``eta`` (length bias, > 0), ``length_scale`` (``L``).
    Reference policy: a Llama with ``hidden`` x ``layers`` trained by SFT on ``n_sft`` noisy demonstrations.
    Pairs: best and worst of ``samples_per_prompt`` reference samples per prompt, as the judge ranks them.
    """

    n_words: int = 32
    min_targets: int = 2
    max_targets: int = 6
    miss_prob: float = 0.2
    filler_mean: float = 1.5
    tau: float = 8.0
    eta: float = 1.0
    length_scale: float = 4.0
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    n_sft: int = 6000
    sft_epochs: int = 4
    sft_lr: float = 3e-3
    sft_batch: int = 64
    max_new_tokens: int = 14
    n_train_prompts: int = 2048
    n_eval_prompts: int = 512
    samples_per_prompt: int = 6
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.min_targets <= self.max_targets <= self.n_words <= len(WORDS):
            raise ValueError(
                f"need 1 <= min_targets ({self.min_targets}) <= max_targets ({self.max_targets}) <= n_words "
                f"({self.n_words}) <= {len(WORDS)}"
            )
        if self.eta < 0 or self.tau <= 0 or self.length_scale <= 0:
            raise ValueError(f"judge needs tau > 0, eta >= 0, length_scale > 0; got {self.tau}, {self.eta}, {self.length_scale}")
        if self.max_new_tokens <= self.max_targets:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must exceed max_targets={self.max_targets}")
        if self.samples_per_prompt < 2:
            raise ValueError(f"samples_per_prompt={self.samples_per_prompt}: need >= 2 to pick a best and a worst")

    @property
    def words(self) -> list[str]:
        return WORDS[: self.n_words]

    def key(self) -> str:
        """Short hash of the settings: the cache directory's name."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Prompt:
    """A prompt's target words, in the order the prompt lists them."""

    targets: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.targets) + " " + PROMPT_END


def make_prompts(config: WorldConfig, n: int, rng: random.Random) -> list[Prompt]:
    words = config.words
    return [Prompt(tuple(rng.sample(words, rng.randint(config.min_targets, config.max_targets)))) for _ in range(n)]


def quality(targets: tuple[str, ...] | list[str], response: list[str]) -> float:
    """True quality: F1 between the response's word set and the target set (0 for an empty response)."""
    got, want = set(response), set(targets)
    hit = len(got & want)
    if hit == 0:
        return 0.0
    precision, recall = hit / len(got), hit / len(want)
    return 2 * precision * recall / (precision + recall)


def demonstration(config: WorldConfig, prompt: Prompt, rng: random.Random) -> list[str]:
    """A noisy demonstration: targets missed with ``miss_prob`` (at least one kept), geometric filler, shuffled."""
    kept = [w for w in prompt.targets if rng.random() >= config.miss_prob] or [rng.choice(prompt.targets)]
    p_stop = 1.0 / (1.0 + config.filler_mean)  # geometric on {0, 1, ...} with mean filler_mean
    n_filler = 0
    while rng.random() >= p_stop:
        n_filler += 1
    others = [w for w in config.words if w not in prompt.targets]
    words = kept + [rng.choice(others) for _ in range(n_filler)]
    rng.shuffle(words)
    return words[: config.max_new_tokens - 1]
