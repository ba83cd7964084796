"""The CLI package's shape: fast --help, every command listed, no import circles."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import evalctl

CLI = Path(__file__).resolve().parents[3] / "evalctl" / "cli"
SHARED = {"evalctl.cli._common", "evalctl.cli.render"}


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "sys.argv = ['evalctl', '--help']\n"
        "from evalctl.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'peft') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_help_lists_commands(tmp_path: Path):
    out = evalctl("--help", home=tmp_path)
    assert out.returncode == 0
    for command in ("run", "validate", "runs", "db"):
        assert command in out.stdout


def _imported(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_command_module_imports_the_cli_root_or_a_sibling():
    modules = sorted(p for p in CLI.glob("*.py") if p.name != "__init__.py")
    assert {"_common.py", "render.py", "aliases.py", "gate.py"} <= {p.name for p in modules}
    for path in modules:
        for name in _imported(path):
            if name == "evalctl.cli" or name.startswith("evalctl.cli."):
                assert name in SHARED or name.rsplit(".", 1)[0] in SHARED, (
                    f"{path.name} imports {name}: command modules import only "
                    "evalctl.cli._common and evalctl.cli.render"
                )
