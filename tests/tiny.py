"""Tiny models, tokenizers and preference datasets built in-process (no hub access), for the TRL/CLI tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = (
    "the a sky sea tree cat dog is are was blue green red big small good bad yes no it this that and or "
    "what color why how answer question please tell me about very quite not really sure think so"
).split()
#: Trainer settings of the trainer tests: no saving, a log per step, fp32, no checkpointing, quiet.
TRAINER_ARGS = dict(per_device_train_batch_size=4, learning_rate=1e-3, seed=0, report_to="none", save_strategy="no",
                    logging_steps=1, disable_tqdm=True, bf16=False, gradient_checkpointing=False)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}</s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer():
    """A word-level fast tokenizer over :data:`WORDS` with pad, eos, unk and a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    vocab = {tok: i for i, tok in enumerate(specials + WORDS + list("?.,!"))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", padding_side="left"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": specials[3:]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_model(tokenizer, seed: int = 0, hidden: int = 16, layers: int = 2):
    """A tiny Llama causal LM over ``tokenizer``'s vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def save_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Save a tiny model and its tokenizer under ``directory``; ``from_pretrained(directory)`` loads them."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer, seed=seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_pairs(n: int = 32, seed: int = 0, conversational: bool = False) -> list[dict]:
    """``n`` preference pairs; rejected answers are longer on average, like real data."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = _sentence(rng, rng.randint(2, 6)) + " ?"
        chosen = _sentence(rng, rng.randint(1, 5)) + " ."
        rejected = _sentence(rng, rng.randint(2, 9)) + " ."
        if conversational:
            rows.append(
                {
                    "prompt": [{"role": "user", "content": prompt}],
                    "chosen": [{"role": "assistant", "content": chosen}],
                    "rejected": [{"role": "assistant", "content": rejected}],
                }
            )
        else:
            rows.append({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_cli(config: dict, directory: Path, capsys) -> tuple[int, str]:
    """``adadpo train --config`` on ``config`` (written to ``directory/run.yaml``), in process: the exit code and
    what it wrote to stderr (earlier captured output is dropped first)."""
    import yaml

    from adadpo.cli import main

    (directory / "run.yaml").write_text(yaml.safe_dump(config))
    capsys.readouterr()
    try:
        code = main(["train", "--config", str(directory / "run.yaml")])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def cli_config(world: Path, out: Path, **overrides) -> dict:
    """An ``adadpo train`` config on the ``world`` fixture's model and plain data, writing to ``out``."""
    return {
        "model_name_or_path": str(world / "model"),
        "dataset_name": str(world / "data"),
        "output_dir": str(out),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "save_steps": 2,
        "gradient_checkpointing": False,
        "disable_tqdm": True,
        "report_to": [],  # TRL's list form (a str "none" works too)
        **overrides,
    }


def write_yaml(path: Path, config: dict) -> Path:
    """``config`` as YAML at ``path``."""
    import yaml

    path.write_text(yaml.safe_dump(config))
    return path
