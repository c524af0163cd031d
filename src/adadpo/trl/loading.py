"""Load what ``adadpo train`` and ``adadpo diagnose`` name: datasets, tokenizers, models and callbacks.

Every name is a Hugging Face Hub id or a local path; errors say which one failed and why.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

from datasets import Dataset, DatasetDict, IterableDataset, IterableDatasetDict, load_dataset, load_from_disk

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
TEXT_FORMATS = (".jsonl", ".json", ".csv")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.sep in name.strip("/").split("/", 1)[-1] or name.endswith(
        tuple(FILE_BUILDERS)
    )


def load_preference_dataset(name: str, config: str | None = None, streaming: bool = False) -> DatasetDict | IterableDatasetDict:
    """A dataset by Hub id, local file (jsonl/json/parquet/csv), ``save_to_disk`` directory or directory of files.

    A single file becomes the split ``train``.
    """
    path = os.path.expanduser(name)
    if os.path.isfile(path) and not open(path, "rb").read(4096).strip():
        raise ValueError(f"dataset_name={name!r} is an empty file; it needs one preference pair per row")
    problem = _non_utf8(path)  # pyarrow would load such bytes and fail later, when the row is read
    if problem:
        raise ValueError(f"dataset_name={name!r}: {problem}; save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
    try:
        data = _load(name, path, config, streaming)
    except UnicodeDecodeError as err:
        raise ValueError(f"dataset_name={name!r}: {_non_utf8(path) or err}; save the file as UTF-8 "
                         "(e.g. iconv -f latin1 -t utf-8)") from err
    except Exception as err:
        if not os.path.exists(path) or isinstance(err, ValueError) and str(err).startswith("dataset_name="):
            raise
        raise ValueError(f"dataset_name={name!r} could not be read: {_bad_json_line(path) or _cause(err)}") from err
    if isinstance(data, (Dataset, IterableDataset)):
        data = DatasetDict({"train": data}) if isinstance(data, Dataset) else IterableDatasetDict({"train": data})
    return data


def _cause(err: BaseException) -> str:
    """The first line of the innermost error (the datasets library wraps the parser's in its own), and what to do
    about a loading script, which datasets no longer runs."""
    while err.__cause__ is not None or err.__context__ is not None and not err.__suppress_context__:
        err = err.__cause__ or err.__context__
    text = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    if "scripts are no longer supported" in text:
        return f"{text} (datasets runs no loading script); save the data as jsonl or parquet files, or with " \
               "save_to_disk"
    formats = "/".join(sorted(set(FILE_BUILDERS.values())))
    return f"{type(err).__name__}: {text}; is a file cut short or not valid {formats}?"


def _bad_json_line(path: str) -> str | None:
    """Where a JSON-lines file ``path`` first fails to parse (the last line of a file cut short, often)."""
    if not path.lower().endswith(".jsonl") or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    for number, line in enumerate(lines, start=1):
        try:
            if line.strip():
                json.loads(line)
        except ValueError as err:
            last = " (the last: a file cut short?)" if not any(rest.strip() for rest in lines[number:]) else ""
            return f"{path}, line {number}{last} is not valid JSON ({err}); fix or delete that line"
    return None


def _non_utf8(path: str) -> str | None:
    """Where the first non-UTF-8 byte of the text data file (or of the directory's text data files) ``path`` is."""
    files = [path] if os.path.isfile(path) else sorted(
        os.path.join(root, f) for root, _, names in os.walk(path) for f in names) if os.path.isdir(path) else []
    for file in (f for f in files if f.lower().endswith(TEXT_FORMATS)):
        with open(file, "rb") as f:
            for number, line in enumerate(f, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError as err:
                    return f"{file}, line {number}: byte 0x{line[err.start]:02x} at column {err.start + 1} is not UTF-8"
    return None


def _load(name: str, path: str, config: str | None, streaming: bool) -> Any:
    if os.path.isfile(path):
        ext = os.path.splitext(path)[1].lower()
        if ext not in FILE_BUILDERS:
            raise ValueError(f"dataset_name={name!r} is a {ext or 'extension-less'} file; expected one of {sorted(FILE_BUILDERS)}")
        data = load_dataset(FILE_BUILDERS[ext], data_files={"train": path}, streaming=streaming)
    elif os.path.isdir(path):
        saved = any(os.path.exists(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))
        data = load_from_disk(path) if saved else load_dataset(path, name=config, streaming=streaming)
    elif _looks_like_path(name):
        raise ValueError(f"dataset_name={name!r} does not exist (no such file or directory)")
    else:
        try:
            data = load_dataset(name, name=config, streaming=streaming)
        except Exception as err:  # offline, unknown id, private: say which name failed
            raise ValueError(
                f"could not load dataset_name={name!r} from the Hugging Face Hub ({type(err).__name__}: {err}); "
                "pass a Hub id reachable from here or a local jsonl/json/parquet/csv file or directory"
            ) from err
    return data


def select_split(data: DatasetDict | IterableDatasetDict, split: str, field: str) -> Any:
    """``data[split]``, or ``ValueError`` naming ``field`` and the splits that exist."""
    if split not in data:
        raise ValueError(f"{field}={split!r} is not a split of the dataset; it has {sorted(data)}")
    return data[split]


def import_callback(spec: str) -> Any:
    """Instantiate a ``transformers.TrainerCallback`` from ``"package.module:ClassName"``."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"callbacks entry {spec!r} must look like 'package.module:ClassName'")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"callbacks entry {spec!r} could not be imported: {err}") from err
    from transformers import TrainerCallback

    if isinstance(obj, type) and issubclass(obj, TrainerCallback):
        try:
            return obj()
        except TypeError as err:
            raise ValueError(f"callbacks entry {spec!r} cannot be built without arguments ({err})") from err
    if isinstance(obj, TrainerCallback):
        return obj
    raise ValueError(f"callbacks entry {spec!r} is a {type(obj).__name__}, not a transformers.TrainerCallback "
                     "(a subclass or an instance of one)")


#: Endings of the class names of models with a language-model head that predicts the next token.
CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def causal_lm_problem(config: Any) -> str | None:
    """Why a model of transformers ``config`` cannot be trained as a causal LM, or ``None``: an encoder-decoder
    (T5, BART), an encoder-only model (BERT: bidirectional attention, every token sees the answer), a model type
    without a causal-LM class, or saved weights of a class without the LM head (a bare ``LlamaModel``, a
    classifier: ``AutoModelForCausalLM`` would give it a random head without a word)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = getattr(config, "model_type", "")
    if getattr(config, "is_encoder_decoder", False):
        return f"an encoder-decoder model ({kind}); preference training here needs a decoder-only causal LM"
    if kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and getattr(config, "is_decoder", None) is False:
        return f"an encoder-only model ({kind}: bidirectional attention, no next-token prediction); use a causal LM"
    auto_map = getattr(config, "auto_map", None) or {}
    if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and "AutoModelForCausalLM" not in auto_map:
        return f"a model of type {kind!r} with no causal-LM class in transformers; use a causal LM"
    saved = getattr(config, "architectures", None) or []
    if saved and not any(name.endswith(CAUSAL_HEADS) for name in saved):
        return (f"its weights are a {', '.join(saved)}, without the language-model head (AutoModelForCausalLM would "
                "add a random one); use the ...ForCausalLM checkpoint of this model")
    return None
