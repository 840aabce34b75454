"""``python -m harness`` runs the CLI."""

import sys

from harness.cli import main

sys.exit(main())
