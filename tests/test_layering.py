"""The crypto layer stands alone: the offline console loads it without Flask or the desk."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_crypto_imports_neither_flask_nor_desk() -> None:
    code = ("import sys, crypto.bundle, crypto.codename, crypto.custody, crypto.errors, "
            "crypto.gpg, crypto.keys, crypto.objects, crypto.reply;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'desk', 'werkzeug', 'sqlalchemy'));"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == ""


def test_only_crypto_gpg_imports_gnupg() -> None:
    importers = []
    for path in [*ROOT.glob("crypto/**/*.py"), *ROOT.glob("desk/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "gnupg" for name in names):
                importers.append(path.relative_to(ROOT).as_posix())
    assert importers == ["crypto/gpg.py"]


def test_models_and_store_load_without_flask() -> None:
    code = ("import sys, desk.models, desk.store, desk.config, desk.db;"
            "print('flask' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "False"
