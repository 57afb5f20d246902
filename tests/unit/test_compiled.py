"""The compiled data path: present where the build must compile it, and never silently stale."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from turnout.compiled import data_path_compiled, stale_compiled_sources


def test_a_source_edited_after_compiling_is_stale(tmp_path: Path) -> None:
    (tmp_path / "proxy").mkdir()
    fresh_source = tmp_path / "proxy" / "pool.py"
    edited_source = tmp_path / "proxy" / "session.py"
    for source in (fresh_source, edited_source):
        source.write_text("")
        os.utime(source, (1_000, 1_000))
    for name in ("pool", "session"):
        library = tmp_path / "proxy" / f"{name}.cpython-311-x86_64-linux-gnu.so"
        library.write_bytes(b"")
        os.utime(library, (2_000, 2_000))
    os.utime(edited_source, (3_000, 3_000))  # edited after the build
    (tmp_path / "turnout__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # no source of its own

    assert stale_compiled_sources(tmp_path) == [edited_source]


def test_plain_python_sources_are_never_stale(tmp_path: Path) -> None:
    (tmp_path / "cli.py").write_text("")
    assert stale_compiled_sources(tmp_path) == []


@pytest.mark.skipif(not os.environ.get("TURNOUT_REQUIRE_COMPILED"), reason="only where the build must compile")
def test_the_data_path_is_compiled_where_required() -> None:
    assert data_path_compiled()


def _compiled_sources() -> list[Path]:
    package = Path(__file__).resolve().parents[2] / "src" / "turnout"
    return sorted(
        path for folder in ("protocol", "proxy") for path in (package / folder).glob("*.py")
        if path.name not in ("__init__.py", "workers.py")
    )


def test_no_name_is_caught_as_two_exception_types_in_one_function() -> None:
    """Compiled code gives a variable one type for its whole function: `except A as exc` and
    later `except B as exc` fails with a TypeError when a B arrives. (It did: a backend
    refusing a login crashed the session instead of answering the client.)"""
    clashes = []
    for path in _compiled_sources():
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            caught: dict[str, set[str]] = {}
            for node in ast.walk(function):
                if isinstance(node, ast.ExceptHandler) and node.name:
                    caught.setdefault(node.name, set()).add(ast.unparse(node.type) if node.type else "")
            clashes += [f"{path.name}:{function.lineno} {function.name}: {name} as {sorted(types)}"
                        for name, types in caught.items() if len(types) > 1]
    assert _compiled_sources() and not clashes, clashes
