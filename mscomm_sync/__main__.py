"""``python -m mscomm_sync``: the same as the ``mscomm`` command."""

from .cli import main

raise SystemExit(main())
