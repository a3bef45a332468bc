"""`python -m headmaps.cli` runs the CLI."""

import sys

from . import main

sys.exit(main())
