"""The frozen app's entry point (PyInstaller's script): the same `main` as the `cfr-studio`
console script."""

import multiprocessing
import sys

if __name__ == "__main__":
    # the batch's process workers are spawned by re-running this executable; freeze_support
    # turns such a child into a worker instead of a second app
    multiprocessing.freeze_support()
    from app.cli import main

    sys.exit(main())
