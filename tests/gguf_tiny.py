"""A tiny Llama GGUF written in-process with ``gguf.GGUFWriter``, shaped like SmolLM2-135M-Instruct's Q4_1 file.

Tied embeddings (no ``output.weight``), a byte-level BPE ("gpt2") vocabulary with ChatML control tokens and
SmolLM2's chat template, and a mix of tensor types (Q4_1, Q8_0, F16, F32) so that loading it exercises
de-quantization. The q/k projections are stored in llama.cpp's rotary layout (``_permute``), which
``transformers`` undoes on load; the returned expected tensors are in ``transformers``' layout and names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# SmolLM2-135M-Instruct's own template (ChatML with a default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 as in SmolLM2
WORDS = ["the", "sky", "is", "blue", "sea", "green", "hello", "world", "what", "color", "user", "assistant",
         "system", "yes", "no", "answer", "question", "good", "bad", "tree"]

CONFIG = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
}


def _byte_alphabet() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _vocab() -> tuple[list[str], list[str], list[int]]:
    """Tokens, merges ("a b" strings, best first) and token types for a small byte-level BPE."""
    tokens = list(SPECIALS) + _byte_alphabet()
    merges: list[str] = []
    known = set(tokens)

    def merge(left: str, right: str) -> None:
        if left + right not in known:
            merges.append(f"{left} {right}")
            tokens.append(left + right)
            known.add(left + right)

    for word in WORDS:
        pieces = list(word)
        while len(pieces) > 1:  # merge left to right: ((a b) c) ...
            merge(pieces[0], pieces[1])
            pieces = [pieces[0] + pieces[1]] + pieces[2:]
        merge("\u0120", word)  # "Ġ" is the byte-level space: " word" is one more merge
    types = [3] * len(SPECIALS) + [1] * (len(tokens) - len(SPECIALS))  # 3 CONTROL, 1 NORMAL
    return tokens, merges, types


def _permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """llama.cpp's ``convert_hf_to_gguf`` rotary permutation of a q/k projection (HF -> GGUF layout)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """The inverse of :func:`_permute` (what ``transformers`` applies on load)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> dict:
    """Write the tiny GGUF to ``path``; return what a correct conversion must reproduce.

    Returns a dict with
      ``config``: the Llama config values written (plus vocab_size, head_dim, token ids),
      ``tensors``: ``{transformers parameter name: float32 ndarray}``, the values a loader must produce
                   (de-quantized exactly as ``gguf.quants.dequantize`` does, in ``transformers`` layout),
      ``original``: the float32 weights before quantization, same names and layout,
      ``types``: ``{transformers parameter name: ggml type name}``,
      ``tokens``, ``merges``, ``chat_template``, ``specials``.
    """
    import gguf
    from gguf import GGMLQuantizationType as Q
    from gguf.quants import dequantize, quantize

    path = Path(path)
    rng = np.random.default_rng(seed)
    c = dict(CONFIG)
    tokens, merges, token_types = _vocab()
    hidden, n_head, n_kv = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
    head_dim = hidden // n_head
    c.update(vocab_size=len(tokens), head_dim=head_dim, bos_token_id=1, eos_token_id=2, pad_token_id=2,
             unk_token_id=0, tie_word_embeddings=True)

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_name("tiny-smollm2")
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(hidden)
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_vocab_size(len(tokens))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_1)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(token_types)
    w.add_token_merges(merges)
    w.add_bos_token_id(c["bos_token_id"])
    w.add_eos_token_id(c["eos_token_id"])
    w.add_unk_token_id(c["unk_token_id"])
    w.add_pad_token_id(c["pad_token_id"])
    w.add_add_bos_token(False)
    w.add_chat_template(CHAT_TEMPLATE)

    expected: dict[str, np.ndarray] = {}
    original: dict[str, np.ndarray] = {}
    types: dict[str, str] = {}

    def add(gguf_name: str, hf_name: str, value: np.ndarray, qtype, heads: tuple[int, int] | None = None) -> None:
        value = value.astype(np.float32)
        stored = _permute(value, *heads) if heads else value
        data = quantize(stored, qtype)
        if qtype in (Q.F32, Q.F16):
            w.add_tensor(gguf_name, data)
        else:
            w.add_tensor(gguf_name, data, raw_dtype=qtype)
        loaded = dequantize(data, qtype).astype(np.float32).reshape(value.shape)
        expected[hf_name] = _unpermute(loaded, *heads) if heads else loaded
        original[hf_name] = value
        types[hf_name] = qtype.name

    def rand(*shape: int, scale: float = 0.2) -> np.ndarray:
        return rng.normal(0.0, scale, size=shape)

    inter, kv_dim = c["intermediate_size"], n_kv * head_dim
    add("token_embd.weight", "model.embed_tokens.weight", rand(len(tokens), hidden, scale=0.5), Q.Q8_0)
    for i in range(c["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        add(b + "attn_norm.weight", p + "input_layernorm.weight", 1.0 + rand(hidden, scale=0.05), Q.F32)
        add(b + "attn_q.weight", p + "self_attn.q_proj.weight", rand(hidden, hidden), Q.Q4_1, (n_head, n_head))
        add(b + "attn_k.weight", p + "self_attn.k_proj.weight", rand(kv_dim, hidden), Q.Q4_1, (n_head, n_kv))
        add(b + "attn_v.weight", p + "self_attn.v_proj.weight", rand(kv_dim, hidden), Q.Q8_0)
        add(b + "attn_output.weight", p + "self_attn.o_proj.weight", rand(hidden, hidden), Q.F16)
        add(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", 1.0 + rand(hidden, scale=0.05), Q.F32)
        add(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", rand(inter, hidden), Q.Q4_1)
        add(b + "ffn_up.weight", p + "mlp.up_proj.weight", rand(inter, hidden), Q.Q4_1)
        add(b + "ffn_down.weight", p + "mlp.down_proj.weight", rand(hidden, inter), Q.Q8_0)
    add("output_norm.weight", "model.norm.weight", 1.0 + rand(hidden, scale=0.05), Q.F32)
    # Tied embeddings, as in SmolLM2: no output.weight, the head is the embedding matrix.
    expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    original["lm_head.weight"] = original["model.embed_tokens.weight"]
    types["lm_head.weight"] = types["model.embed_tokens.weight"]

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return {"config": c, "tensors": expected, "original": original, "types": types, "tokens": tokens,
            "merges": merges, "chat_template": CHAT_TEMPLATE, "specials": list(SPECIALS)}
