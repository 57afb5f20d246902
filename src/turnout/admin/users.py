"""mysql_users as ProxySQL puts them in force: clear-text passwords hashed (admin-hash_passwords),
and runtime_mysql_users with one row per role, a frontend row and a backend row. Pure functions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from turnout.config.model import MysqlUser
from turnout.protocol.auth import native_password_hash


def is_hashed(password: str) -> bool:
    """A mysql_native_password hash ("*" + 40 hex digits) or a caching_sha2_password one ("$A$...")."""
    return (len(password) == 41 and password.startswith("*")) or password.startswith("$A$")


def hashed(users: Sequence[MysqlUser]) -> tuple[MysqlUser, ...]:
    """The users with clear-text passwords replaced by their mysql_native_password hash, as
    LOAD MYSQL USERS TO RUNTIME does when admin-hash_passwords is true (empty ones stay empty)."""
    return tuple(
        user if not user.password or is_hashed(user.password)
        else dataclasses.replace(user, password=native_password_hash(user.password))
        for user in users
    )


def runtime_rows(users: Sequence[MysqlUser]) -> list[MysqlUser]:
    """runtime_mysql_users: the active users only, a (frontend=1, backend=0) row for a frontend
    user and a (frontend=0, backend=1) row for a backend user; SAVE MYSQL USERS TO MEMORY copies
    these rows to memory, as ProxySQL does."""
    rows = []
    for user in users:
        if not user.active:
            continue
        if user.frontend:
            rows.append(dataclasses.replace(user, frontend=1, backend=0))
        if user.backend:
            rows.append(dataclasses.replace(user, frontend=0, backend=1))
    return sorted(rows, key=lambda row: (row.username, row.backend))
