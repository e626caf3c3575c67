"""app.core is the engine: it must import with Qt and torch unavailable (DESIGN.md §1)."""

import subprocess
import sys
from pathlib import Path

import app.core

CORE = Path(app.core.__file__).parent

BLOCKER = r"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('PySide6', 'torch', 'shiboken6'):
            raise ImportError('blocked for this test: ' + name)
sys.meta_path.insert(0, Block())
import pkgutil, importlib, app.core
for m in pkgutil.walk_packages(app.core.__path__, 'app.core.'):
    importlib.import_module(m.name)
    print(m.name)
assert not any(k.split('.')[0] in ('PySide6', 'torch') for k in sys.modules)
"""


def test_every_core_module_imports_without_qt_or_torch():
    out = subprocess.run([sys.executable, "-c", BLOCKER], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    imported = out.stdout.split()
    assert "app.core.align" in imported
    expected = {f"app.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__"}
    assert expected <= set(imported)
