"""Authentication decisions (Orchestrator's AuthenticationMethod), exhaustively."""

from __future__ import annotations

import base64
import itertools

import pytest

from turnout.api import auth
from turnout.manager.settings import ManagerSettings, SettingsError


def header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def settings(method: str = "", user: str = "dba", password: str = "pw") -> ManagerSettings:
    return ManagerSettings.from_mapping({"AuthenticationMethod": method, "HTTPAuthUser": user,
                                         "HTTPAuthPassword": password})


def test_basic_credentials_parsing() -> None:
    assert auth.basic_credentials(header("a", "b:c")) == ("a", "b:c")
    assert auth.basic_credentials("basic " + base64.b64encode(b"x:").decode()) == ("x", "")
    for bad in (None, "", "Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):
        assert auth.basic_credentials(bad) is None


CREDENTIALS = [None, ("dba", "pw"), ("dba", "wrong"), ("readonly", "anything"), ("readonly", ""), ("other", "pw")]


@pytest.mark.parametrize(("method", "credentials"), list(itertools.product(["", "basic", "multi"], CREDENTIALS)))
def test_authenticate_every_method_and_credential(method: str, credentials: tuple[str, str] | None) -> None:
    identity = auth.authenticate(settings(method), header(*credentials) if credentials else None)
    if method == "":
        assert identity == auth.Identity("", can_act=True, authenticated=False)
    elif credentials == ("dba", "pw"):
        assert identity == auth.Identity("dba", can_act=True, authenticated=True)
    elif method == "multi" and credentials is not None and credentials[0] == "readonly":
        assert identity == auth.Identity("readonly", can_act=False, authenticated=True)
    else:
        assert identity is None


def test_method_is_case_insensitive_as_in_orchestrator() -> None:
    assert auth.authenticate(settings("Multi"), header("readonly", "x")) == auth.Identity("readonly", False, True)


@pytest.mark.parametrize(("method", "path", "acts"), [
    ("GET", "/api/clusters-info", False), ("GET", "/api/cluster/c1", False), ("GET", "/api/audit", False),
    ("GET", "/api/instance/h/1", False), ("GET", "/api/health", False), ("GET", "/api/replication-analysis", False),
    ("GET", "/api/graceful-master-takeover/c1", True), ("GET", "/api/graceful-master-takeover-auto/c/h/1", True),
    ("GET", "/api/recover/h/1", True), ("GET", "/api/ack-recovery/cluster/c", True), ("GET", "/api/discover/h/1", True),
    ("GET", "/api/forget/h/1", True), ("GET", "/api/begin-downtime/h/1/o/r/1h", True),
    ("GET", "/api/end-downtime/h/1", True), ("GET", "/api/unfence/h/1", True),
    ("GET", "/api/some-route-added-later/x", True), ("GET", "/api/topology-tags/c", False),
    ("GET", "/api/cluster-osc-slaves/c", False), ("GET", "/api/relocate/h/1/h/2", True),
    ("GET", "/api/set-writeable/h/1", True), ("GET", "/api/disable-global-recoveries", True),
    ("GET", "/", False), ("GET", "/console/api/events", False), ("HEAD", "/console/static/console.js", False),
    ("POST", "/console/api/anything", True), ("DELETE", "/x", True),
])
def test_what_counts_as_an_action(method: str, path: str, acts: bool) -> None:
    assert auth.is_action(method, path) is acts


def test_cross_site_requests_from_browsers_are_told_apart() -> None:
    assert not auth.cross_site(None)  # curl, orchestrator-client
    assert not auth.cross_site("same-origin")
    assert not auth.cross_site("none")  # typed into the address bar
    assert auth.cross_site("cross-site")
    assert auth.cross_site("same-site")


@pytest.mark.parametrize(("host", "method", "warned"), [
    ("127.0.0.1", "", False), ("127.0.0.2", "", False), ("::1", "", False), ("localhost", "", False),
    ("0.0.0.0", "", True), ("10.1.2.3", "", True), ("::", "", True), ("db-admin.example", "", True),
    ("0.0.0.0", "basic", False), ("0.0.0.0", "multi", False),
])
def test_listener_warning(host: str, method: str, warned: bool) -> None:
    warning = auth.listener_warning(host, settings(method))
    assert (warning is not None) is warned
    if warning:
        assert "AuthenticationMethod" in warning and "HTTPAuthUser" in warning and host in warning


@pytest.mark.parametrize(("values", "message"), [
    ({"AuthenticationMethod": "proxy"}, "not supported"),
    ({"AuthenticationMethod": "token"}, "not supported"),
    ({"AuthenticationMethod": "basic"}, "needs HTTPAuthUser and HTTPAuthPassword"),
    ({"AuthenticationMethod": "multi", "HTTPAuthUser": "dba"}, "needs HTTPAuthUser and HTTPAuthPassword"),
    ({"AuthenticationMethod": "multi", "HTTPAuthUser": "readonly", "HTTPAuthPassword": "x"}, "must not be `readonly`"),
])
def test_settings_refuse_unusable_authentication(values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        ManagerSettings.from_mapping(values)
