"""Child process of bench_startup: the workstation's start-up path until the main window is shown.

It does what ``app.gui.run`` does in demo mode (logging, QApplication and style, unlock the
encrypted cache, demo users, the demo coordinator's main window) and prints the wall-clock time at
which the window is exposed on screen, so the parent can measure from before it spawned us.
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QCoreApplication

from app.config import Paths, default_home
from app.gui import _install_logging, build_main_window, make_application
from app.security.roles import Role
from app.workstation import open_workstation


def main() -> int:
    paths = Paths(default_home())
    _install_logging(paths)
    app = make_application()
    ws = open_workstation(paths.home)
    ws.users.ensure_demo_users()
    window = build_main_window(ws, ws.users.demo_session(Role.COORDINATOR))
    window.show()
    deadline = time.monotonic() + 30
    while not (window.windowHandle() and window.windowHandle().isExposed()):
        QCoreApplication.processEvents()
        if time.monotonic() > deadline:
            return 1
    app.processEvents()  # the first paint
    print(f"shown {time.time():.6f}", flush=True)
    window.shutdown()
    window.close()
    ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
