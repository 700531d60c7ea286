"""Bundle entry point for the workstation (python -m app)."""

import sys

from app.gui import run

sys.exit(run(sys.argv[1:]))
