"""The test tree itself: pytest imports test files by basename (no __init__.py), so two with one
name break collection of the whole suite (as tests/export/test_errors.py and
tests/models/test_errors.py once did in CI)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_file_names_are_unique():
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []


def test_no_test_imports_a_conftest_by_name():
    # `from conftest import X` picks whichever conftest pytest imported first; helpers live in
    # resnetkit.testing instead.
    offenders = [p.relative_to(TESTS) for p in TESTS.rglob("*.py") if "from conftest import" in p.read_text()
                 and p.name != "test_layout.py"]
    assert offenders == []


def test_no_test_reaches_into_another_test_folder():
    # sys.path.insert + `from test_x import helper` couples two test files by their location;
    # a helper two folders share belongs in resnetkit.testing.
    offenders = [p.relative_to(TESTS) for p in TESTS.rglob("*.py") if "sys.path.insert" in p.read_text()
                 and p.name != "test_layout.py"]
    assert offenders == []


def test_no_test_imports_a_module_of_the_test_tree():
    # `from tiny_runs import image_run` worked only because pytest puts each test folder on
    # sys.path: a bare import of a sibling file couples folders as sys.path.insert does.
    import ast

    local = {p.stem for p in TESTS.rglob("*.py")} | {p.name for p in TESTS.rglob("*") if p.is_dir()}
    offenders = []
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            offenders += [f"{path.relative_to(TESTS)}: {n}" for n in names if n.split(".")[0] in local]
    assert offenders == []


def test_the_test_tree_mirrors_the_package():
    # Every subpackage of resnetkit has its folder of tests (cli, data, engine, ..., runtime).
    package = TESTS.parent / "src" / "resnetkit"
    subpackages = {p.parent.name for p in package.glob("*/__init__.py")} - {"recipes", "testing"}
    assert sorted(subpackages - {p.name for p in TESTS.iterdir() if p.is_dir()}) == []
    assert [p.name for p in TESTS.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"] == []
