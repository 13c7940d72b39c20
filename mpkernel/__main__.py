"""`python -m mpkernel` is the `mpkernel` command."""

from mpkernel.cli import main

raise SystemExit(main())
