"""The benchmark's worlds, one package each, each defining ``WORLD`` (:class:`adadpo.bench.world.World`)."""
