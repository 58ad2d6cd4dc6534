"""`python -m seglib` runs the CLI."""

from seglib.cli import main

raise SystemExit(main())
