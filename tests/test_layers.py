"""The layering the house rules promise, checked on the source itself (AST, not grep):

- only `qortcli/store/` talks to a collection: no query or write method is called anywhere else in the
  package, the worker or the viewer (steps, doors and pages read through `qortcli.store.read` and write
  through `qortcli.store.ops` / the store modules);
- the quant core does no I/O and imports nothing of ours but `qortcli.quant` (and the day-count home);
- one home per concept: the normal law only in `quant/black76.py`, year bases only in `qortcli/timeutils.py`,
  a docstring (with its units) on every public quant function.
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


# ----------------------------------------------------------------------------- one home per concept (issue 15)

QUANT_FILES = sorted((ROOT / "qortcli" / "quant").glob("*.py"))
SOURCE_FILES = [p for base in ("qortcli", "jobs", "viewer/qortview") for p in sorted((ROOT / base).rglob("*.py"))]
YEAR_CONSTANTS = {365, 365.0, 365.25, 31_536_000, 31_536_000.0, 31_557_600, 31_557_600.0}
NORMAL_LAW = {"cdf", "pdf", "ppf", "sf", "erf", "erfc", "erfcx", "ndtr", "ndtri", "log_ndtr"}


def test_every_public_quant_function_and_class_has_a_docstring():
    missing = [f"{p.name}:{n.lineno} {n.name}" for p in QUANT_FILES for n in ast.parse(p.read_text()).body
               if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and not n.name.startswith("_")
               and not ast.get_docstring(n)]
    assert missing == []


def test_no_year_basis_is_written_into_arithmetic_outside_timeutils():
    """Days per year come from `qortcli.timeutils.BASES`: no 365 / 365.25 / seconds-per-year literal takes part
    in a calculation anywhere else (365 as a window length, a tick or a default lookback is not arithmetic)."""
    sample = ast.parse("t = days / 365\nwindows = (30, 365)\ny = s / 31536000 * 365.25\n")
    assert len(_year_arithmetic(sample)) == 3                 # the detector sees / 365, / 31536000 and * 365.25
    offenders = {p.relative_to(ROOT).as_posix(): found for p in SOURCE_FILES
                 if p.name != "timeutils.py" and (found := _year_arithmetic(ast.parse(p.read_text())))}
    assert offenders == {}


def _year_arithmetic(tree) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.BinOp)
            for side in (node.left, node.right)
            if isinstance(side, ast.Constant) and not isinstance(side.value, bool) and side.value in YEAR_CONSTANTS]


def test_the_normal_law_lives_in_black76_only():
    """One Black-76: no norm.cdf / erf / ndtr (scipy, math or numpy spellings) outside quant/black76.py."""
    sample = ast.parse("from scipy.stats import norm\nimport math\np = norm.cdf(d1) + math.erf(x)\n"
                       "from scipy.special import ndtr\nq = len(x)\n")
    assert _normal_law(sample) == [1, 3, 3, 4]
    assert _normal_law(ast.parse((ROOT / "qortcli/quant/black76.py").read_text()))   # the home itself is seen
    offenders = {p.relative_to(ROOT).as_posix(): found for p in SOURCE_FILES
                 if p.relative_to(ROOT).as_posix() != "qortcli/quant/black76.py"
                 and (found := _normal_law(ast.parse(p.read_text())))}
    assert offenders == {}


def _normal_law(tree) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in NORMAL_LAW:
            receiver = node.func.value
            if (getattr(receiver, "id", "") or getattr(receiver, "attr", "")) in {"norm", "special", "math", "stats"}:
                lines.append(node.lineno)
        if isinstance(node, ast.ImportFrom) and node.module in {"scipy.special", "scipy.stats", "math"} \
                and any(a.name in NORMAL_LAW | {"norm"} for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)
