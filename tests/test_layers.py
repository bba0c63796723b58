"""The layering the house rules promise, checked on the source itself (AST, not grep):

- only `qortcli/store/` talks to a collection: no query or write method is called anywhere else in the
  package, the worker or the viewer (steps, doors and pages read through `qortcli.store.read` and write
  through `qortcli.store.ops` / the store modules);
- the quant core does no I/O and imports nothing of ours but `qortcli.quant`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTION_METHODS = {"find", "find_one", "count_documents", "estimated_document_count", "distinct", "aggregate",
                      "insert_one", "insert_many", "update_one", "update_many", "replace_one", "delete_one",
                      "delete_many", "bulk_write", "create_index", "drop_index", "find_one_and_update"}   # (not "drop": pandas)
OUTSIDE_STORE = [p for base in ("qortcli", "jobs", "viewer/qortview") for p in sorted((ROOT / base).rglob("*.py"))
                 if "qortcli/store" not in p.relative_to(ROOT).as_posix()]


def collection_calls(source: str) -> list[tuple[int, str]]:
    """(line, method) of every call `x.method(...)` with a collection method name whose receiver is a
    subscript or a name/attribute chain (db[...].find, coll.find_one, self.db[X].update_one), excluding
    str.find-style calls on string literals."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in COLLECTION_METHODS:
            continue
        receiver = node.func.value
        if isinstance(receiver, ast.Constant) or (isinstance(receiver, ast.Call)
                                                  and getattr(receiver.func, "id", "") in {"str", "repr"}):
            continue
        if node.func.attr == "find" and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            continue                                  # text.find("x")
        found.append((node.lineno, node.func.attr))
    return found


def test_the_detector_finds_store_calls_and_ignores_string_search():
    sample = ("db[schema.OPTIONS].find({})\nself.db[X].update_one({}, {})\ncoll.count_documents({})\n"
              "text.find('x')\nline.find(\"a\")\n'abc'.find('b')\n")
    assert [m for _, m in collection_calls(sample)] == ["find", "update_one", "count_documents"]


def test_no_collection_is_queried_or_written_outside_the_store_package():
    assert len(OUTSIDE_STORE) > 40
    offenders = {}
    for path in OUTSIDE_STORE:
        calls = collection_calls(path.read_text())
        if calls:
            offenders[path.relative_to(ROOT).as_posix()] = calls
    assert offenders == {}, "query the store through qortcli.store.read / write through qortcli.store modules"


@pytest.mark.parametrize("path", sorted((ROOT / "qortcli" / "quant").glob("*.py")), ids=lambda p: p.name)
def test_the_quant_core_is_pure(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("qortcli"):
            # timeutils is the day-count home (pure: datetime and numpy), the one non-quant module allowed
            assert node.module.startswith("qortcli.quant") or node.module == "qortcli.timeutils", \
                f"{path.name}:{node.lineno} imports {node.module}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("qortcli") or alias.name.startswith("qortcli.quant"), alias.name
                assert alias.name.split(".")[0] not in {"requests", "pymongo", "sqlite3", "socket", "urllib"}, alias.name
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open":
            pytest.fail(f"{path.name}:{node.lineno} opens a file")
