"""Bundle entry point for the careops command."""

import sys

from app.cli import main

sys.exit(main())
