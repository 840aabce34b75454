"""``python -m advharness.cli`` runs the CLI (as ``python -m advharness`` does)."""

import sys

from advharness.cli import main

sys.exit(main())
