"""``python -m advharness`` runs the CLI."""

import sys

from advharness.cli import main

sys.exit(main())
