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
