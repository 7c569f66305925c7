"""The tree keeps its layers: no import cycles, each layer imports only those beneath it, the
air-gap contract (`crypto/`) stands alone and the offline console imports nothing online."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

from desk.review.server import HEADERS as VIEWER_HEADERS
from tests.harness.paths import FIXTURES, REPO

ROOT = REPO

# Each layer, lowest first, and the layers it may import besides itself. The online desk
# follows its data flow: bytes are stored, recorded, taken in by intake or sent out by
# outbound, spoken over HTTP by web, and run by ops. The console sits apart from all of it.
BASE = ("desk.config", "desk.errors", "desk.paths", "desk")
LAYERS: dict[str, tuple[str, ...]] = {
    "crypto": (),
    "base": ("crypto",),
    "desk.storage": ("crypto", "base"),
    "desk.records": ("crypto", "base", "desk.storage"),
    "desk.services": ("crypto", "base", "desk.storage", "desk.records"),
    "desk.intake": ("crypto", "base", "desk.storage", "desk.records", "desk.services"),
    "desk.outbound": ("crypto", "base", "desk.storage", "desk.records", "desk.services"),
    "desk.web": ("crypto", "base", "desk.storage", "desk.records", "desk.services",
                 "desk.intake", "desk.outbound"),
    "desk.ops": ("crypto", "base", "desk.storage", "desk.records", "desk.services",
                 "desk.intake", "desk.outbound", "desk.web"),
    # The air-gapped console: the shared contract and where templates live, nothing else.
    "desk.review": ("crypto", "desk.paths"),
}


def layer_of(module: str) -> str:
    """The layer a module belongs to; `desk.app` is the web factory."""
    if module == "desk.app":
        return "desk.web"
    if module == "desk.__main__":
        return "desk.ops"
    if module in BASE:
        return "base"
    for layer in sorted(LAYERS, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def may_import(importer: str, imported: str) -> bool:
    """Whether `importer` may import `imported` under LAYERS."""
    mine, theirs = layer_of(importer), layer_of(imported)
    if mine == theirs:
        return True
    allowed = LAYERS[mine]
    return theirs in allowed or (theirs == "base" and imported in allowed)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Every module of desk/ and crypto/ and the project modules it imports, at any depth of
    the file (function-level imports count: a cycle through one is still a cycle)."""
    modules = {module_name(p): p for p in [*root.glob("crypto/**/*.py"),
                                           *root.glob("desk/**/*.py")]}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                     *([base] if base else [])])
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _runtime_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node except those under `if TYPE_CHECKING:`, which never run."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def violations(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """`importer -> imported` for every import that reaches above or across its layer."""
    return sorted(f"{importer} -> {imported}" for importer, targets in graph.items()
                  for imported in targets
                  # A package's __init__ importing from itself is no layer crossing.
                  if not imported.startswith(importer + ".")
                  and not may_import(importer, imported))


def test_the_product_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_every_import_respects_the_layers() -> None:
    assert violations(import_graph()) == []


def test_a_planted_cycle_and_a_planted_layer_violation_are_found() -> None:
    graph = {name: set(targets) for name, targets in import_graph().items()}
    graph["desk.storage.store"].add("desk.web.context")
    graph["desk.web.context"].add("desk.storage.store")
    graph["desk.review.cli"].add("desk.records.models")
    assert any({"desk.storage.store", "desk.web.context"} <= set(group)
               for group in cycles(graph))
    assert violations(graph) == ["desk.review.cli -> desk.records.models",
                                 "desk.storage.store -> desk.web.context"]


@pytest.mark.parametrize(("importer", "imported", "allowed"), [
    ("desk.web.source.views", "desk.intake.ingest", True),
    ("desk.intake.ingest", "desk.web.context", False),
    ("desk.records.items", "desk.outbound.replies", False),
    ("desk.intake.tus", "desk.outbound.export", False),
    ("desk.review.importer", "crypto.bundle", True),
    ("desk.review.report", "desk.paths", True),
    ("desk.review.server", "desk.config", False),
    ("crypto.gpg", "desk.errors", False),
    ("desk.ops.cli", "desk.app", True),
])
def test_layer_rules(importer: str, imported: str, allowed: bool) -> None:
    assert may_import(importer, imported) is allowed


def test_crypto_imports_neither_flask_nor_desk() -> None:
    code = ("import sys, crypto.bundle, crypto.codename, crypto.custody, crypto.errors, "
            "crypto.gpg, crypto.keys, crypto.names, crypto.items, crypto.reply, "
            "crypto.sealing;"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('flask', 'desk', 'werkzeug', 'sqlalchemy'));"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == ""


def test_the_console_loads_without_the_online_desk() -> None:
    code = ("import sys, desk.review.cli, desk.review.server;"
            "online = sorted(m for m in sys.modules if m.startswith('desk.')"
            " and not m.startswith(('desk.review', 'desk.paths')));"
            "print(','.join(online))")
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


def test_everything_below_the_web_layer_loads_without_flask() -> None:
    below = sorted(name for name in import_graph()
                   if layer_of(name) in ("base", "desk.storage", "desk.records", "desk.services",
                                         "desk.intake", "desk.outbound")
                   and ".migrations." not in name)
    assert "desk.intake.ingest" in below
    assert "desk.records.models" in below
    code = (f"import sys, {', '.join(below)};"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'flask'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"


# What the air-gapped console is installed without: the online desk's web stack.
ONLINE_ONLY = ("flask", "flask_wtf", "flask_babel", "alembic", "gunicorn")

# Run in a fresh interpreter with ONLINE_ONLY unimportable (any attempt is recorded, so one
# hidden behind `except ImportError` counts too): import every module of the console, ask
# `desk-review` and each of its commands for --help, draw a contact sheet (the console's
# lazily imported picture libraries), then start the viewer as `desk-review serve` does and
# fetch its item list and a stylesheet over HTTP. Prints what it saw as JSON.
UNDER_BAN = r"""
import sys

BANNED = set(sys.argv[1].split(","))
tried = []


class Ban:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BANNED:
            tried.append(name)
            raise ImportError(f"{name} is not installed on the offline machine")
        return None


sys.meta_path.insert(0, Ban())

import contextlib, http.client, importlib, io, json, pkgutil, tempfile, threading
from pathlib import Path
from urllib.parse import urlsplit

import desk.review

for module in pkgutil.walk_packages(desk.review.__path__, "desk.review."):
    importlib.import_module(module.name)

from desk.review.cli import main
from desk.review.server import start_viewer
from desk.review.sheet import contact_sheet
from desk.review.workspace import Workspace

helps = {}
for args in (["--help"], *([name, "--help"] for name in sorted(main.commands))):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        code = main(args, prog_name="desk-review", standalone_mode=False)
    helps[" ".join(args)] = (code, out.getvalue().startswith("Usage: desk-review"))

with tempfile.TemporaryDirectory() as folder:
    scratch = Path(folder) / "staging"
    contact_sheet(Path(sys.argv[2]), Path(folder) / "sheet.png", is_image=True, scratch=scratch)
    sheet = (Path(folder) / "sheet.png").read_bytes()[:8].hex()
    workspace = Workspace.open(Path(folder) / "workspace")
    server, url = start_viewer(workspace, None)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = urlsplit(url)
    pages = {}
    for path in (address.path, address.path + "static/desk.css"):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
        connection.request("GET", path)
        response = connection.getresponse()
        pages[path.removeprefix(address.path)] = [
            response.status, dict(response.getheaders()), response.read().decode()]
        connection.close()
    server.shutdown()
    server.server_close()
    workspace.engine.dispose()

loaded = sorted(m for m in sys.modules if m.split(".")[0] in BANNED)
print(json.dumps({"tried": tried, "loaded": loaded, "helps": helps, "sheet": sheet,
                  "base": address.path, "pages": pages}))
"""


def _console_files() -> list[Path]:
    """The console's own code: desk/review/, crypto/, and the desk package around them."""
    return sorted([*ROOT.glob("desk/review/**/*.py"), *ROOT.glob("crypto/**/*.py"),
                   ROOT / "desk" / "paths.py", ROOT / "desk" / "__init__.py"])


def _packages_imported(path: Path) -> set[str]:
    """The top-level package of every import in a module, at any depth (lazy ones too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_no_console_module_imports_the_online_web_stack() -> None:
    # Imports inside functions too, which only the commands that run them would reach.
    assert [f"{path.relative_to(ROOT)}: {package}" for path in _console_files()
            for package in sorted(_packages_imported(path) & set(ONLINE_ONLY))] == []


def test_the_console_and_its_viewer_run_without_the_online_web_stack() -> None:
    """`desk-review` is installed on the air-gapped machine without Flask, its extensions,
    Alembic or gunicorn: with those unimportable, every console module loads, every command
    answers --help, and the viewer `serve` starts answers over HTTP with its headers."""
    result = subprocess.run(
        [sys.executable, "-c", UNDER_BAN, ",".join(ONLINE_ONLY),
         str(FIXTURES / "camera-canon-40d.jpg")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["tried"] == []
    assert seen["loaded"] == []
    assert seen["helps"]["--help"] == [0, True]
    assert {"import --help", "open --help", "report --help", "serve --help"} <= \
        set(seen["helps"])
    assert all(answer == [0, True] for answer in seen["helps"].values()), seen["helps"]
    assert seen["sheet"] == b"\x89PNG\r\n\x1a\n".hex()
    status, headers, body = seen["pages"][""]
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert {name: headers.get(name) for name in VIEWER_HEADERS} == VIEWER_HEADERS
    assert "No items yet" in body
    assert f'<link rel="stylesheet" href="{seen["base"]}static/desk.css">' in body
    status, headers, _ = seen["pages"]["static/desk.css"]
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert {name: headers.get(name) for name in VIEWER_HEADERS} == VIEWER_HEADERS
