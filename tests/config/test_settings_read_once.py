"""Settings are read one way: ``settings.NAME``, defined with its default in config/settings.py.

A ``getattr(settings, "NAME", default)`` hides a second default that can disagree with the
settings file, so none is allowed in the project's code.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_reads_a_setting_with_a_default_of_its_own():
    found = []
    for package in ("chat", "accounts", "config"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr")
                    and node.args
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id == "settings"
                ):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
