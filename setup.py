"""Build: the proxy's data path (the MySQL protocol and the proxy) compiled to C with mypyc.

The same modules run as plain Python when they are not compiled: set TURNOUT_PURE_PYTHON=1, or
build where mypyc or a C compiler is missing (the build says so and goes on without them).
Everything else in turnout is plain Python either way.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

# Every module a statement's bytes pass through; workers.py only starts processes, serving.py
# must stay interpreted (see its docstring).
COMPILED = sorted(
    str(path)
    for package in ("protocol", "proxy")
    for path in Path("src/turnout", package).glob("*.py")
    if path.name not in ("__init__.py", "workers.py", "serving.py")
)


class build_ext_or_pure_python(build_ext):
    """A failed compilation leaves turnout in plain Python, slower but whole, and says so;
    TURNOUT_REQUIRE_COMPILED=1 (CI) makes it fail the build instead."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, or no Python headers
            if os.environ.get("TURNOUT_REQUIRE_COMPILED"):
                raise
            for ext in self.extensions:  # all or nothing: a module without its shared library would not import
                Path(self.get_ext_fullpath(ext.name)).unlink(missing_ok=True)
            print(
                f"turnout: compiling the data path failed ({exc}); installing it as plain Python. "
                "For the compiled, faster proxy install a C compiler and Python's headers "
                "(Debian: build-essential python3-dev) and reinstall.",
                file=sys.stderr,
            )


def compiled_modules() -> list[object]:
    if os.environ.get("TURNOUT_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("turnout: mypyc is not installed; the data path stays plain Python", file=sys.stderr)
        return []
    return list(mypycify(COMPILED, opt_level="3", group_name="turnout"))


setup(ext_modules=compiled_modules(), cmdclass={"build_ext": build_ext_or_pure_python})
