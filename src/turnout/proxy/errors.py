"""What goes wrong in the data path: the exceptions and the error codes clients hear.

Every other module of proxy/ imports these from here, so none needs another's internals to
name a failure.
"""

from __future__ import annotations

from turnout.protocol.constants import max_connect_timeout_message
from turnout.protocol.generic import ErrPacket

ER_PROXY_NO_SERVER = 9001  # ProxySQL's code for "no server in the hostgroup in time"
ER_PROXY_RULE_ERROR = 1148  # a query rule's error_msg
ER_STATEMENT_TIMEOUT = 1969  # MariaDB's "max_statement_time exceeded": what drivers know as a timeout
# SQLSTATE 40001 ("transaction rolled back, retry it"): what drivers and ORMs already retry on.
ER_TRANSACTION_ENDED = 1213
# What a client hears when the server went away in the middle of its statement: MariaDB's
# "Connection was killed" (SQLSTATE 70100), never a client-range code (2000-2999), which
# libmariadb clients (the mariadb CLI, sysbench, Connector/C and /Python) read as a malformed
# packet (2027).
ER_LOST_BACKEND = 1927  # ER_CONNECTION_KILLED
# Its messages (drivers act on the code; the text says what became of the statement).
LOST_BACKEND = "Lost connection to backend server during query"
LOST_ROLLED_BACK = "Lost connection to backend server during query; the open transaction was rolled back"
LOST_UNKNOWN_OUTCOME = "Lost connection to server during query: the statement may or may not have been applied"
ER_NO_SUCH_THREAD = 1094  # KILL QUERY: the statement ended meanwhile, nothing to kill
ER_KILL_DENIED = 1095  # "You are not owner of thread N"
ER_QUERY_INTERRUPTED = 1317
ER_CONNECTION_KILLED = 1927
ER_NOT_SUPPORTED_YET = 1235
ER_SUBQUERY_NO_1_ROW = 1242  # what the proxy's privilege probe for KILL answers when there is one
# Errors after which the server closes the connection (MariaDB's "Connection was killed", a
# shutdown): such a connection must never be used again.
CONNECTION_ENDING_ERRORS = frozenset({1927, 1053})


class ClientGone(Exception):
    """The client closed its connection or sent something that ends it."""


class NoServer(Exception):
    """No server of the hostgroup could take a connection within mysql-connect_timeout_server_max."""

    def __init__(self, hostgroup: int, waited_ms: int, reason: str = "") -> None:
        super().__init__(max_connect_timeout_message(hostgroup, waited_ms) + (f": {reason}" if reason else ""))


class BackendError(Exception):
    """The backend connection failed; it must not be used again."""


class BackendRefused(BackendError):
    """The server answered with an error packet (bad credentials, too many connections…)."""

    def __init__(self, err: ErrPacket) -> None:
        super().__init__(f"{err.code} ({err.sql_state}): {err.message}")
        self.err = err


class BackendLost(Exception):
    """The backend connection of a statement ended under it, after `relayed` bytes of its answer
    reached the client."""

    def __init__(self, relayed: int, message: str = "") -> None:
        super().__init__(message or f"backend lost after {relayed} bytes")
        self.relayed = relayed
