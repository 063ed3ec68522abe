"""`python -m x2i` (and `accelerate launch -m x2i distill ...`) runs the `x2i` command."""

import sys

from x2i.app.cli import main

sys.exit(main())
