"""Where a configuration's shared state lives: one rule for every role.

`turnout up`, `turnout proxy` and `turnout manager` started from the same configuration file
must follow the same truth, so they all open the store this module names:

- `[manager] StateStore = "etcd://…"`: that etcd;
- `[manager] StateStore = "path"`: that SQLite file, a relative path taken from the datadir;
- otherwise `[manager] SQLite3DataFile` (default `turnout-state.db`), a relative name taken
  from the datadir.

`turnout manager` used to keep the file next to the configuration file instead; a file found
there is reported (`StrayStateFile`) rather than silently left behind, since a manager and a
proxy following two different files would follow two different masters and fences.
"""

from __future__ import annotations

from pathlib import Path

from turnout.state.factory import ETCD_SCHEME


class StrayStateFile(Exception):
    """A state file where an earlier turnout kept it, which is not the one in force."""


def state_target(datadir: Path, store: str, data_file: str) -> str:
    """What `open_store` opens for these settings: an etcd URL, or the SQLite file's path."""
    if store.lower().startswith(ETCD_SCHEME):
        return store
    path = Path(store or data_file)
    return str(path if path.is_absolute() else datadir / path)


def stray_state_file(config_path: Path | None, datadir: Path, store: str, data_file: str) -> Path | None:
    """The state file next to the configuration file (where `turnout manager` kept it before)
    when it exists and is not the file in force, else None."""
    if store or config_path is None or Path(data_file).is_absolute():
        return None
    old = config_path.parent / data_file
    new = datadir / data_file
    if not old.exists() or old.resolve() == new.resolve():
        return None
    return old


def check_no_stray_state(config_path: Path | None, datadir: Path, store: str, data_file: str) -> str:
    """`state_target`, or StrayStateFile saying what to do when an old state file is found."""
    target = state_target(datadir, store, data_file)
    old = stray_state_file(config_path, datadir, store, data_file)
    if old is None:
        return target
    new = Path(target)
    if new.exists():
        advice = (f"{new} exists too: keep the one that holds this configuration's current masters and "
                  f"fences (check with `sqlite3 FILE 'SELECT * FROM clusters'`) and delete the other")
    else:
        advice = (f"if it holds this configuration's masters and fences, stop every turnout using it and "
                  f"move it (with its -wal and -shm files): mv {old} {new}; otherwise delete it")
    raise StrayStateFile(
        f"found a state file at {old}, next to the configuration file, where `turnout manager` kept it "
        f"before; every role (up, proxy, manager) now keeps its state in the datadir, at {new}. {advice}"
    )
