"""The benchmark: sweeps of methods x grid x seeds in a world, their run cache, reports, plots and paired statistics.

The framework (this package's modules) is world-agnostic; each world lives in :mod:`adadpo.bench.worlds` behind
the :class:`adadpo.bench.world.World` interface. ``adadpo demo`` and ``adadpo sweep`` run it; it needs the
``bench`` extra. Nothing here is imported by ``import adadpo`` or by the user commands ``adadpo train``,
``diagnose`` and ``explain``.
"""
