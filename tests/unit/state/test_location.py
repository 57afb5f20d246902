"""One rule for where a configuration's state lives, and the stray file an older manager left."""

from __future__ import annotations

from pathlib import Path

import pytest

from turnout.config.file import parse
from turnout.state.location import StrayStateFile, check_no_stray_state, state_target, stray_state_file


def test_every_setting_resolves_in_the_datadir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert state_target(data, "", "turnout-state.db") == str(data / "turnout-state.db")
    assert state_target(data, "", "/srv/state.db") == "/srv/state.db"
    assert state_target(data, "shared/state.db", "ignored.db") == str(data / "shared/state.db")
    assert state_target(data, "/srv/shared.db", "ignored.db") == "/srv/shared.db"
    assert state_target(data, "etcd://a:2379,b/turnout", "x.db") == "etcd://a:2379,b/turnout"
    assert state_target(data, "ETCD://a", "x.db") == "ETCD://a"


def test_the_data_directory_defaults_to_the_configuration_files(tmp_path: Path) -> None:
    assert parse("", path=tmp_path / "t.toml").data_directory == tmp_path
    assert parse('datadir = "/srv/t"', path=tmp_path / "t.toml").data_directory == Path("/srv/t")
    assert parse("").data_directory == Path(".")


def test_a_state_file_next_to_the_configuration_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "turnout.toml"
    data = tmp_path / "data"
    assert stray_state_file(config, data, "", "turnout-state.db") is None
    old = tmp_path / "turnout-state.db"
    old.write_bytes(b"")
    assert stray_state_file(config, data, "", "turnout-state.db") == old
    with pytest.raises(StrayStateFile) as caught:
        check_no_stray_state(config, data, "", "turnout-state.db")
    message = str(caught.value)
    assert str(old) in message and str(data / "turnout-state.db") in message and "mv " in message
    data.mkdir()
    (data / "turnout-state.db").write_bytes(b"")
    with pytest.raises(StrayStateFile, match="exists too"):
        check_no_stray_state(config, data, "", "turnout-state.db")


@pytest.mark.parametrize(
    ("store", "data_file", "datadir_is_config_dir"),
    [
        ("etcd://a/t", "turnout-state.db", False),  # the state is in etcd
        ("/srv/x.db", "turnout-state.db", False),  # named explicitly, as before
        ("", "/srv/x.db", False),  # absolute: the same file for every role before too
        ("", "turnout-state.db", True),  # no datadir: the old place is the new place
    ],
)
def test_no_stray_file_where_every_role_already_agreed(
    tmp_path: Path, store: str, data_file: str, datadir_is_config_dir: bool
) -> None:
    (tmp_path / "turnout-state.db").write_bytes(b"")
    data = tmp_path if datadir_is_config_dir else tmp_path / "data"
    assert stray_state_file(tmp_path / "turnout.toml", data, store, data_file) is None
    check_no_stray_state(tmp_path / "turnout.toml", data, store, data_file)
