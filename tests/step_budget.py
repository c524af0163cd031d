"""Count what one training step costs on the host: the adadpo types it builds and the device reads it waits for.

- :class:`DeviceReads`: a ``TorchDispatchMode`` counting the ops that make the host wait for the device on a GPU
  (``aten._local_scalar_dense``: ``.item()``, ``int(t)``, ``bool(t)``; ``nonzero``; ``masked_select``; indexing
  with a boolean mask, which computes its size from the values) plus ``Tensor.tolist`` (a copy to the host).
  On CPU nothing waits, but the same ops would: the count is the GPU's.
- :class:`Constructions`: a profile hook recording each instance of a class defined in ``adadpo`` built while it
  is active (``__init__`` of dataclasses and plain classes, ``__new__`` of named tuples).
"""

from __future__ import annotations

import collections
import sys
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
_SYNCING = {aten._local_scalar_dense, aten.nonzero, aten.masked_select}
_INDEXING = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


def _bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ())


class DeviceReads(TorchDispatchMode):
    """``with DeviceReads() as reads: ...``; then ``reads.total`` and ``reads.ops`` (op name -> count)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        packet = func.overloadpacket
        if packet in _SYNCING:
            self.ops[packet.__name__] += 1
        elif packet in _INDEXING and _bool_index(args):
            self.ops[f"{packet.__name__}[bool mask]"] += 1
        return func(*args, **(kwargs or {}))

    def __enter__(self) -> DeviceReads:
        self._tolist = torch.Tensor.tolist
        counter, tolist = self.ops, self._tolist

        def counted_tolist(t: torch.Tensor) -> Any:
            counter["tolist"] += 1
            return tolist(t)

        torch.Tensor.tolist = counted_tolist
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        torch.Tensor.tolist = self._tolist
        return super().__exit__(*exc)

    @property
    def total(self) -> int:
        return sum(self.ops.values())


class Constructions:
    """``with Constructions() as built: ...``; then ``built.types`` (adadpo class name -> instances built)."""

    def __init__(self) -> None:
        self.types: collections.Counter[str] = collections.Counter()
        self._seen: dict[int, Any] = {}  # id -> the instance, kept alive so that its id is not reused

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        names = code.co_varnames
        new = code.co_name == "__new__" or (code.co_name == "<lambda>" and names[:1] == ("_cls",))  # named tuples
        if not names or not (new or code.co_name == "__init__"):
            return
        first = frame.f_locals.get(names[0])
        cls = first if new else type(first)
        if not isinstance(cls, type) or not cls.__module__.startswith("adadpo"):
            return
        if not new:  # once per instance, whatever the chain of super().__init__ calls
            if id(first) in self._seen:
                return
            self._seen[id(first)] = first
        self.types[cls.__qualname__] += 1

    def __enter__(self) -> Constructions:
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: Any) -> None:
        sys.setprofile(self._previous)
