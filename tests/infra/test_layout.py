"""The code's layout: no import circle between the children of any folder of engine/src
(DESIGN.md: lower layers never import higher ones, not even inside a folder)."""

import subprocess
import sys

from conftest import REPO


def test_no_import_circle_inside_any_folder():
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "module-cycles"), str(REPO / "engine" / "src")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
