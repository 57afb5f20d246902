"""Numbers of the MySQL client/server protocol: capability and status flags, command bytes,
column types, and the error codes (with their SQLSTATEs) a proxy sends."""

from __future__ import annotations

from typing import Final

# Capability flags.
CLIENT_LONG_PASSWORD: Final = 1 << 0
CLIENT_FOUND_ROWS: Final = 1 << 1
CLIENT_LONG_FLAG: Final = 1 << 2
CLIENT_CONNECT_WITH_DB: Final = 1 << 3
CLIENT_NO_SCHEMA: Final = 1 << 4
CLIENT_COMPRESS: Final = 1 << 5
CLIENT_ODBC: Final = 1 << 6
CLIENT_LOCAL_FILES: Final = 1 << 7
CLIENT_IGNORE_SPACE: Final = 1 << 8
CLIENT_PROTOCOL_41: Final = 1 << 9
CLIENT_INTERACTIVE: Final = 1 << 10
CLIENT_SSL: Final = 1 << 11
CLIENT_IGNORE_SIGPIPE: Final = 1 << 12
CLIENT_TRANSACTIONS: Final = 1 << 13
CLIENT_RESERVED: Final = 1 << 14
CLIENT_SECURE_CONNECTION: Final = 1 << 15
CLIENT_MULTI_STATEMENTS: Final = 1 << 16
CLIENT_MULTI_RESULTS: Final = 1 << 17
CLIENT_PS_MULTI_RESULTS: Final = 1 << 18
CLIENT_PLUGIN_AUTH: Final = 1 << 19
CLIENT_CONNECT_ATTRS: Final = 1 << 20
CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: Final = 1 << 21
CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS: Final = 1 << 22
CLIENT_SESSION_TRACK: Final = 1 << 23
CLIENT_DEPRECATE_EOF: Final = 1 << 24
CLIENT_OPTIONAL_RESULTSET_METADATA: Final = 1 << 25
CLIENT_ZSTD_COMPRESSION_ALGORITHM: Final = 1 << 26
CLIENT_QUERY_ATTRIBUTES: Final = 1 << 27
CLIENT_SSL_VERIFY_SERVER_CERT: Final = 1 << 30
CLIENT_REMEMBER_OPTIONS: Final = 1 << 31

# MariaDB reuses CLIENT_LONG_PASSWORD's bit in the greeting to say "I am not MySQL":
# a server that clears it sends extended capabilities in the greeting's filler bytes.
# MySQL (and this proxy) set it.
CLIENT_MYSQL: Final = CLIENT_LONG_PASSWORD

# MariaDB extended capabilities (upper 32 bits of a 64-bit capability word).
MARIADB_CLIENT_PROGRESS: Final = 1 << 32
MARIADB_CLIENT_COM_MULTI: Final = 1 << 33
MARIADB_CLIENT_STMT_BULK_OPERATIONS: Final = 1 << 34
MARIADB_CLIENT_EXTENDED_TYPE_INFO: Final = 1 << 35
MARIADB_CLIENT_CACHE_METADATA: Final = 1 << 36

DEFAULT_SERVER_CAPABILITIES = (
    CLIENT_PROTOCOL_41
    | CLIENT_SECURE_CONNECTION
    | CLIENT_PLUGIN_AUTH
    | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
    | CLIENT_CONNECT_WITH_DB
    | CLIENT_CONNECT_ATTRS
    | CLIENT_LONG_PASSWORD
    | CLIENT_LONG_FLAG
    | CLIENT_TRANSACTIONS
    | CLIENT_MULTI_STATEMENTS
    | CLIENT_MULTI_RESULTS
    | CLIENT_PS_MULTI_RESULTS
    | CLIENT_LOCAL_FILES
    | CLIENT_FOUND_ROWS
    | CLIENT_INTERACTIVE
    | CLIENT_NO_SCHEMA
)
# What a client asks for by default, as libmariadb does: all of the above but CLIENT_NO_SCHEMA,
# which makes the server ignore the database in db.table.column.
DEFAULT_CLIENT_CAPABILITIES: Final = DEFAULT_SERVER_CAPABILITIES & ~CLIENT_NO_SCHEMA

# Server status flags.
SERVER_STATUS_IN_TRANS: Final = 0x0001
SERVER_STATUS_AUTOCOMMIT: Final = 0x0002
SERVER_MORE_RESULTS_EXISTS: Final = 0x0008
SERVER_STATUS_NO_GOOD_INDEX_USED: Final = 0x0010
SERVER_STATUS_NO_INDEX_USED: Final = 0x0020
SERVER_STATUS_CURSOR_EXISTS: Final = 0x0040
SERVER_STATUS_LAST_ROW_SENT: Final = 0x0080
SERVER_STATUS_DB_DROPPED: Final = 0x0100
SERVER_STATUS_NO_BACKSLASH_ESCAPES: Final = 0x0200
SERVER_STATUS_METADATA_CHANGED: Final = 0x0400
SERVER_QUERY_WAS_SLOW: Final = 0x0800
SERVER_PS_OUT_PARAMS: Final = 0x1000
SERVER_STATUS_IN_TRANS_READONLY: Final = 0x2000
SERVER_SESSION_STATE_CHANGED: Final = 0x4000

# Command bytes.
COM_SLEEP: Final = 0x00
COM_QUIT: Final = 0x01
COM_INIT_DB: Final = 0x02
COM_QUERY: Final = 0x03
COM_FIELD_LIST: Final = 0x04
COM_CREATE_DB: Final = 0x05
COM_DROP_DB: Final = 0x06
COM_REFRESH: Final = 0x07
COM_SHUTDOWN: Final = 0x08
COM_STATISTICS: Final = 0x09
COM_PROCESS_INFO: Final = 0x0A
COM_CONNECT: Final = 0x0B
COM_PROCESS_KILL: Final = 0x0C
COM_DEBUG: Final = 0x0D
COM_PING: Final = 0x0E
COM_TIME: Final = 0x0F
COM_DELAYED_INSERT: Final = 0x10
COM_CHANGE_USER: Final = 0x11
COM_BINLOG_DUMP: Final = 0x12
COM_TABLE_DUMP: Final = 0x13
COM_CONNECT_OUT: Final = 0x14
COM_REGISTER_SLAVE: Final = 0x15
COM_STMT_PREPARE: Final = 0x16
COM_STMT_EXECUTE: Final = 0x17
COM_STMT_SEND_LONG_DATA: Final = 0x18
COM_STMT_CLOSE: Final = 0x19
COM_STMT_RESET: Final = 0x1A
COM_SET_OPTION: Final = 0x1B
COM_STMT_FETCH: Final = 0x1C
COM_DAEMON: Final = 0x1D
COM_BINLOG_DUMP_GTID: Final = 0x1E
COM_RESET_CONNECTION: Final = 0x1F
# MariaDB's: one prepared statement run for many rows of parameters (MARIADB_CLIENT_STMT_BULK_OPERATIONS).
COM_STMT_BULK_EXECUTE: Final = 0xFA

COMMAND_NAMES: dict[int, str] = {
    value: name
    for name, value in globals().items()
    if name.startswith("COM_") and isinstance(value, int)
}

# COM_STMT_BULK_EXECUTE flags: the parameter types follow the flags.
STMT_BULK_FLAG_CLIENT_SEND_TYPES: Final = 128
# MariaDB's statement id for "the statement this connection prepared last" (a client may send
# COM_STMT_PREPARE and a command for its statement at once).
LAST_STMT_ID: Final = 0xFFFFFFFF

# COM_SET_OPTION values.
MYSQL_OPTION_MULTI_STATEMENTS_ON: Final = 0
MYSQL_OPTION_MULTI_STATEMENTS_OFF: Final = 1

# COM_STMT_EXECUTE cursor flags.
CURSOR_TYPE_NO_CURSOR: Final = 0x00
CURSOR_TYPE_READ_ONLY: Final = 0x01
CURSOR_TYPE_FOR_UPDATE: Final = 0x02
CURSOR_TYPE_SCROLLABLE: Final = 0x04

# Column types.
MYSQL_TYPE_DECIMAL: Final = 0x00
MYSQL_TYPE_TINY: Final = 0x01
MYSQL_TYPE_SHORT: Final = 0x02
MYSQL_TYPE_LONG: Final = 0x03
MYSQL_TYPE_FLOAT: Final = 0x04
MYSQL_TYPE_DOUBLE: Final = 0x05
MYSQL_TYPE_NULL: Final = 0x06
MYSQL_TYPE_TIMESTAMP: Final = 0x07
MYSQL_TYPE_LONGLONG: Final = 0x08
MYSQL_TYPE_INT24: Final = 0x09
MYSQL_TYPE_DATE: Final = 0x0A
MYSQL_TYPE_TIME: Final = 0x0B
MYSQL_TYPE_DATETIME: Final = 0x0C
MYSQL_TYPE_YEAR: Final = 0x0D
MYSQL_TYPE_NEWDATE: Final = 0x0E
MYSQL_TYPE_VARCHAR: Final = 0x0F
MYSQL_TYPE_BIT: Final = 0x10
MYSQL_TYPE_TIMESTAMP2: Final = 0x11
MYSQL_TYPE_DATETIME2: Final = 0x12
MYSQL_TYPE_TIME2: Final = 0x13
MYSQL_TYPE_JSON: Final = 0xF5
MYSQL_TYPE_NEWDECIMAL: Final = 0xF6
MYSQL_TYPE_ENUM: Final = 0xF7
MYSQL_TYPE_SET: Final = 0xF8
MYSQL_TYPE_TINY_BLOB: Final = 0xF9
MYSQL_TYPE_MEDIUM_BLOB: Final = 0xFA
MYSQL_TYPE_LONG_BLOB: Final = 0xFB
MYSQL_TYPE_BLOB: Final = 0xFC
MYSQL_TYPE_VAR_STRING: Final = 0xFD
MYSQL_TYPE_STRING: Final = 0xFE
MYSQL_TYPE_GEOMETRY: Final = 0xFF

# Column definition flags.
NOT_NULL_FLAG: Final = 0x0001
PRI_KEY_FLAG: Final = 0x0002
UNIQUE_KEY_FLAG: Final = 0x0004
MULTIPLE_KEY_FLAG: Final = 0x0008
BLOB_FLAG: Final = 0x0010
UNSIGNED_FLAG: Final = 0x0020
ZEROFILL_FLAG: Final = 0x0040
BINARY_FLAG: Final = 0x0080
ENUM_FLAG: Final = 0x0100
AUTO_INCREMENT_FLAG: Final = 0x0200
TIMESTAMP_FLAG: Final = 0x0400
SET_FLAG: Final = 0x0800
NUM_FLAG: Final = 0x8000

# Character sets (collation ids).
CHARSET_UTF8_GENERAL_CI: Final = 33
CHARSET_BINARY: Final = 63
CHARSET_UTF8MB4_GENERAL_CI: Final = 45

# Auth plugins.
NATIVE_PASSWORD: Final = "mysql_native_password"
CACHING_SHA2_PASSWORD: Final = "caching_sha2_password"

# Packet header bytes.
OK_HEADER: Final = 0x00
EOF_HEADER: Final = 0xFE
ERR_HEADER: Final = 0xFF
LOCAL_INFILE_HEADER: Final = 0xFB
NULL_COLUMN: Final = 0xFB

# Error codes a proxy sends, and their SQLSTATEs.
ER_CON_COUNT_ERROR: Final = 1040
ER_HANDSHAKE_ERROR: Final = 1043
ER_DBACCESS_DENIED_ERROR: Final = 1044
ER_ACCESS_DENIED_ERROR: Final = 1045
ER_NO_DB_ERROR: Final = 1046
ER_UNKNOWN_COM_ERROR: Final = 1047
ER_BAD_DB_ERROR: Final = 1049
ER_SERVER_SHUTDOWN: Final = 1053
ER_PARSE_ERROR: Final = 1064
ER_UNKNOWN_ERROR: Final = 1105
ER_NET_PACKET_TOO_LARGE: Final = 1153
ER_NET_READ_ERROR: Final = 1158
ER_NET_PACKETS_OUT_OF_ORDER: Final = 1156
ER_TOO_MANY_USER_CONNECTIONS: Final = 1203
ER_LOCK_WAIT_TIMEOUT: Final = 1205
ER_LOCK_DEADLOCK: Final = 1213
ER_UNKNOWN_STMT_HANDLER: Final = 1243
ER_OPTION_PREVENTS_STATEMENT: Final = 1290
ER_QUERY_INTERRUPTED: Final = 1317
ER_MALFORMED_PACKET: Final = 1835
ER_NOT_SUPPORTED_AUTH_MODE: Final = 1251
ER_SSL_CONNECTION_ERROR: Final = 2026  # the client library's CR_SSL_CONNECTION_ERROR
# ProxySQL's own: "Max connect timeout reached while reaching hostgroup X after Yms".
ER_PROXYSQL_MAX_CONNECT_TIMEOUT: Final = 9001
# MariaDB's "Connection was killed": what the proxy answers a statement whose server went away
# under it. Not the client-side 2013: libmariadb (the mariadb CLI, sysbench, Connector/C and
# Connector/Python) reads an ERR packet carrying a client-range code (2000-2999) as a malformed
# packet (2027).
ER_CONNECTION_KILLED: Final = 1927
# Client-side codes (a client's own, for a connection it lost).
CR_SERVER_LOST: Final = 2013
CR_SERVER_GONE_ERROR: Final = 2006

SQLSTATES: dict[int, str] = {
    ER_CON_COUNT_ERROR: "08004",
    ER_HANDSHAKE_ERROR: "08S01",
    ER_DBACCESS_DENIED_ERROR: "42000",
    ER_ACCESS_DENIED_ERROR: "28000",
    ER_NO_DB_ERROR: "3D000",
    ER_UNKNOWN_COM_ERROR: "08S01",
    ER_BAD_DB_ERROR: "42000",
    ER_SERVER_SHUTDOWN: "08S01",
    ER_PARSE_ERROR: "42000",
    ER_NET_PACKET_TOO_LARGE: "08S01",
    ER_NET_READ_ERROR: "08S01",
    ER_NET_PACKETS_OUT_OF_ORDER: "08S01",
    ER_TOO_MANY_USER_CONNECTIONS: "42000",
    ER_LOCK_WAIT_TIMEOUT: "HY000",
    ER_LOCK_DEADLOCK: "40001",
    ER_UNKNOWN_STMT_HANDLER: "HY000",
    ER_OPTION_PREVENTS_STATEMENT: "HY000",
    ER_QUERY_INTERRUPTED: "70100",
    ER_CONNECTION_KILLED: "70100",
    ER_MALFORMED_PACKET: "HY000",
    ER_NOT_SUPPORTED_AUTH_MODE: "08004",
    ER_PROXYSQL_MAX_CONNECT_TIMEOUT: "HY000",
    CR_SERVER_LOST: "HY000",
    CR_SERVER_GONE_ERROR: "HY000",
}


def sql_state_for(code: int) -> str:
    """The SQLSTATE a server sends with error `code` ("HY000" when it has no specific one)."""
    return SQLSTATES.get(code, "HY000")


def max_connect_timeout_message(hostgroup: int, timeout_ms: int) -> str:
    """ProxySQL's text for error 9001, word for word."""
    return f"Max connect timeout reached while reaching hostgroup {hostgroup} after {timeout_ms}ms"
