"""A client of libmariadb (MariaDB Connector/C, the library of the mariadb CLI and of Connector/
Python) that asks for progress reports with a callback, as the CLI's --progress-reports does:
`python libmariadb_progress.py PORT USER PASSWORD SQL...` runs the statements and prints, as JSON,
the progress reports it received (stage, of stages, proc_info) and each statement's affected
rows or error. In a process of its own: libmariadb blocks the calling thread."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys
from typing import Any

MYSQL_PROGRESS_CALLBACK = 5999  # MariaDB's option (mysql.h)
PROGRESS = ctypes.CFUNCTYPE(
    None, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_double, ctypes.c_char_p, ctypes.c_uint
)


def run(port: int, user: str, password: str, statements: list[str]) -> dict[str, Any]:
    lib = ctypes.CDLL(ctypes.util.find_library("mariadb") or "libmariadb.so.3")
    lib.mysql_init.restype = ctypes.c_void_p
    lib.mysql_init.argtypes = [ctypes.c_void_p]
    lib.mysql_optionsv.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.mysql_real_connect.restype = ctypes.c_void_p
    lib.mysql_real_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                       ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p, ctypes.c_ulong]
    lib.mysql_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.mysql_error.restype = ctypes.c_char_p
    lib.mysql_error.argtypes = [ctypes.c_void_p]
    lib.mysql_errno.argtypes = [ctypes.c_void_p]
    lib.mysql_affected_rows.restype = ctypes.c_ulonglong
    lib.mysql_affected_rows.argtypes = [ctypes.c_void_p]
    lib.mysql_store_result.restype = ctypes.c_void_p
    lib.mysql_store_result.argtypes = [ctypes.c_void_p]
    lib.mysql_free_result.argtypes = [ctypes.c_void_p]
    lib.mysql_close.argtypes = [ctypes.c_void_p]

    reports: list[list[Any]] = []

    def on_progress(_mysql: int, stage: int, max_stage: int, _progress: float, info: bytes, length: int) -> None:
        reports.append([stage, max_stage, info[:length].decode()])

    callback = PROGRESS(on_progress)
    mysql = lib.mysql_init(None)
    lib.mysql_optionsv(mysql, MYSQL_PROGRESS_CALLBACK, ctypes.cast(callback, ctypes.c_void_p))
    if not lib.mysql_real_connect(mysql, b"127.0.0.1", user.encode(), password.encode(), None, port, None, 0):
        raise SystemExit(f"connect: {lib.mysql_error(mysql).decode()}")
    outcomes: list[Any] = []
    try:
        for sql in statements:
            if lib.mysql_query(mysql, sql.encode()):
                outcomes.append(["error", lib.mysql_errno(mysql)])
                continue
            result = lib.mysql_store_result(mysql)
            if result:
                lib.mysql_free_result(result)
            outcomes.append(lib.mysql_affected_rows(mysql))
    finally:
        lib.mysql_close(mysql)
    return {"reports": reports, "outcomes": outcomes}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])))
