"""python -m tests.make_demo [SOURCE ...]: rewrite the demo data of the named (default: all) sources."""

import importlib
import pkgutil
import shutil
import sys

from tests import make_demo
from tests.make_demo import DEMO_ROOT

# Every module with a write(root) is a folder of the demo (_bulk only holds the rows others share).
names = sys.argv[1:] or [m.name for m in pkgutil.iter_modules(make_demo.__path__) if m.name != "__main__"]
for name in names:
    module = importlib.import_module(f"tests.make_demo.{name}")
    if not hasattr(module, "write"):
        continue
    root = DEMO_ROOT / name
    shutil.rmtree(root, ignore_errors=True)
    module.write(root)
    print(f"wrote {root}")
