"""`python -m dartsim` runs the command line."""

from dartsim.cli import main

raise SystemExit(main())
