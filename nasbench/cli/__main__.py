"""``python -m nasbench.cli``."""

from nasbench.cli import main

raise SystemExit(main())
