"""The shape of the package, enforced: layers that import one way only, no cycles, small files and functions.

grimp reads every import statement, those inside functions included, so a lazy import cannot hide a
dependency that points up or closes a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deitctl"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("deitctl")


def test_layers_contract_is_kept():
    """pyproject.toml's [tool.importlinter] layers: cli → app → training | export → … → core."""
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_imports_inside_functions_are_seen(graph):
    """The hub download in models.refs is a function-level import: the checks below see such imports."""
    assert graph.direct_import_exists(importer="deitctl.models.refs", imported="deitctl.hub.client")


def test_no_import_cycles(graph):
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append(" → ".join((module, *back)))
    assert not cycles, "\n".join(cycles)


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_files_and_functions_stay_small():
    files = sorted(PACKAGE.rglob("*.py"))
    long_files = [f"{p.relative_to(ROOT)} ({n})" for p in files if (n := len(p.read_text().splitlines())) > 300]
    long_functions = [f"{p.relative_to(ROOT)}:{name} ({n})" for p in files for name, n in _functions(p) if n > 80]
    assert not long_files and not long_functions, (long_files, long_functions)


def test_the_epoch_loop_reads_in_one_screen():
    loop = dict(_functions(PACKAGE / "training" / "loop.py"))
    assert loop["train"] <= 80 and loop["train_epoch"] <= 80
