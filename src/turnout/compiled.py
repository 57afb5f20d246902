"""Whether the data path runs compiled (setup.py builds it with mypyc), and whether a compiled
module is older than its source: an edit not yet rebuilt, which Python would silently ignore
because it imports the compiled module first."""

from __future__ import annotations

from pathlib import Path

import turnout


def data_path_compiled() -> bool:
    from turnout.proxy import fastpath

    return not fastpath.__file__.endswith(".py")


def stale_compiled_sources(package: Path | None = None) -> list[Path]:
    """Sources edited after their module was compiled (rebuild: `make setup`)."""
    package = package or Path(turnout.__file__).parent
    stale = []
    for library in sorted(package.rglob("*.so")):
        source = library.with_name(library.name.split(".", 1)[0] + ".py")
        if source.exists() and source.stat().st_mtime > library.stat().st_mtime:
            stale.append(source)
    return stale
