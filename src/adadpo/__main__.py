"""``python -m adadpo`` is the ``adadpo`` command."""

from adadpo.cli import main

raise SystemExit(main())
