"""`python -m infra.cli`: the same as the `trunkplane` command."""

from infra.cli import main

raise SystemExit(main())
