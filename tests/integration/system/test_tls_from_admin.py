"""TLS switched on and off at runtime from the admin interface of a real `turnout up`."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pymysql
import pytest

from system_harness import RunningTurnout
from turnout.proxy.tls import CA_FILE, CERT_FILE, KEY_FILE
from turnout.sandbox.config import APP


def _set_have_ssl(turnout: RunningTurnout, value: str) -> None:
    with turnout.admin() as admin, admin.cursor() as cur:
        cur.execute("UPDATE global_variables SET variable_value = %s WHERE variable_name = 'mysql-have_ssl'", (value,))
        cur.execute("LOAD MYSQL VARIABLES TO RUNTIME")


def _runtime_have_ssl(turnout: RunningTurnout) -> str:
    with turnout.admin() as admin, admin.cursor() as cur:
        cur.execute("SELECT variable_value FROM runtime_global_variables WHERE variable_name = 'mysql-have_ssl'")
        row = cur.fetchone()
    return "false" if row is None else str(row[0])


def _app(turnout: RunningTurnout, **kwargs: Any) -> pymysql.Connection[Any]:
    return pymysql.connect(host="127.0.0.1", port=turnout.proxy_port, user=APP.user, password=APP.password, **kwargs)


def test_tls_switched_on_and_off_from_the_admin_interface(turnout_up: RunningTurnout, tmp_path: Path) -> None:
    datadir = tmp_path / "data"
    # Certificate files that cannot be loaded: LOAD is refused, saying why, and nothing changes.
    (datadir / CERT_FILE).write_text("not a certificate")
    (datadir / KEY_FILE).write_text("not a key")
    with pytest.raises(pymysql.err.MySQLError) as refused:
        _set_have_ssl(turnout_up, "true")
    assert "cannot load the TLS certificate" in str(refused.value)
    assert _runtime_have_ssl(turnout_up) == "false"
    with _app(turnout_up) as plain, plain.cursor() as cur:
        cur.execute("SELECT 1")
        assert not isinstance(plain._sock, ssl.SSLSocket)

    # Without the files, LOAD makes them and new connections may use TLS.
    (datadir / CERT_FILE).unlink()
    (datadir / KEY_FILE).unlink()
    _set_have_ssl(turnout_up, "true")
    assert _runtime_have_ssl(turnout_up) == "true"
    ca = datadir / CA_FILE
    with _app(turnout_up, ssl_ca=str(ca), ssl_verify_cert=True, ssl_verify_identity=True) as secure, secure.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        assert isinstance(secure._sock, ssl.SSLSocket)

        _set_have_ssl(turnout_up, "false")
        cur.execute("SELECT 2")  # a connection that started with TLS keeps it
        assert cur.fetchone() == (2,)
    with _app(turnout_up) as plain, plain.cursor() as cur:
        cur.execute("SELECT 1")
        assert not isinstance(plain._sock, ssl.SSLSocket)
