"""``python -m app``: the workstation GUI."""

import sys

from app.gui import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
