"""The admin listener: the MySQL protocol on admin-mysql_ifaces, one AdminSession per client.

Credentials come from admin-admin_credentials (full access) and admin-stats_credentials (read
only), both read from the runtime configuration at every login. As in ProxySQL, the default
admin:admin pair is accepted from the loopback interface only.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
from collections.abc import Callable

from turnout.admin.session import AdminSession, Ok, ResultSet
from turnout.admin.store import AdminError, AdminStore
from turnout.config.variables import parse_credentials, parse_interfaces
from turnout.protocol import constants as c
from turnout.protocol.auth import parse_stored_password
from turnout.protocol.commands import command_of, query_text
from turnout.protocol.events import ClientHello
from turnout.protocol.generic import build_eof, build_err, build_ok
from turnout.protocol.packets import Packet, PacketBuffer, ProtocolError, encode_packet
from turnout.protocol.resultset import build_text_resultset
from turnout.protocol.server import ServerHandshake

log = logging.getLogger(__name__)

ADMIN_ERROR = c.ER_ACCESS_DENIED_ERROR  # ProxySQL answers every admin error with 1045
ADMIN_SQLSTATE = "28000"
ERROR_PREFIX = "ProxySQL Admin Error: "  # ProxySQL's, kept: scripts match on it
# Commands ProxySQL's admin answers with 1045 "Command not supported" (no prepared statements there).
NOT_SUPPORTED = (c.COM_STMT_PREPARE, c.COM_STMT_EXECUTE, c.COM_FIELD_LIST)
NO_ANSWER = (c.COM_STMT_CLOSE, c.COM_STMT_SEND_LONG_DATA)  # the client waits for no answer
READ_SIZE = 65536


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def account_for(user: str, peer_host: str, admin_credentials: str, stats_credentials: str) -> tuple[str, bool] | None:
    """(stored password, read_only) for `user` connecting from `peer_host`, or None to refuse."""
    admins = parse_credentials(admin_credentials)
    if user in admins:
        if user == "admin" and admins[user] == "admin" and not is_loopback(peer_host):
            return None
        return admins[user], False
    stats = parse_credentials(stats_credentials)
    if user in stats:
        if user == "stats" and stats[user] == "stats" and not is_loopback(peer_host):
            return None
        return stats[user], True
    return None


class _Connection:
    """Reads whole packets from a stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = PacketBuffer()

    async def packet(self) -> Packet | None:
        while True:
            packet = self.buffer.next_packet()
            if packet is not None:
                return packet
            data = await self.reader.read(READ_SIZE)
            if not data:
                return None
            self.buffer.feed(data)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class AdminListener:
    def __init__(self, store: AdminStore) -> None:
        self.store = store
        self._servers: list[asyncio.Server] = []
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[None] | None] = {}
        self._ids = itertools.count(1)
        self.addresses: list[tuple[str, int]] = []

    async def start(self, interfaces: str) -> None:
        for host, port in parse_interfaces(interfaces):
            server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
            self._servers.append(server)
            self.addresses += [sock.getsockname()[:2] for sock in server.sockets]
        log.info("admin interface listening on %s", ", ".join(f"{h}:{p}" for h, p in self.addresses))

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._connections):
            writer.close()
        tasks = [task for task in self._connections.values() if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        self.addresses.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections[writer] = asyncio.current_task()
        connection = _Connection(reader, writer)
        peer = writer.get_extra_info("peername") or ("", 0)
        try:
            session = await self._login(connection, str(peer[0]))
            if session is not None:
                await self._commands(connection, session)
        except (ProtocolError, ConnectionError, asyncio.IncompleteReadError) as exc:
            log.info("admin client %s:%s dropped: %s", peer[0], peer[1], exc)
        except asyncio.CancelledError:
            # stop() ends open admin sessions; finishing quietly keeps asyncio's stream callback
            # from logging the cancellation as an error.
            pass
        except Exception:
            log.exception("admin client %s:%s failed", peer[0], peer[1])
        finally:
            self._connections.pop(writer, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _login(self, connection: _Connection, peer_host: str) -> AdminSession | None:
        runtime = self.store.runtime
        handshake = ServerHandshake(next(self._ids), server_version=runtime.variable("mysql-server_version", "8.0.11"))
        await connection.send(handshake.greeting())
        packet = await connection.packet()
        if packet is None:
            return None
        hello = handshake.receive(packet)
        assert isinstance(hello, ClientHello)
        user = hello.response.username
        account = account_for(
            user,
            peer_host,
            runtime.variable("admin-admin_credentials", "admin:admin"),
            runtime.variable("admin-stats_credentials", "stats:stats"),
        )
        if account is not None and handshake.wants_switch:
            await connection.send(handshake.switch_to_native())
            packet = await connection.packet()
            if packet is None:
                return None
            handshake.receive(packet)
        if account is None or handshake.accept_native(parse_stored_password(account[0])[0]) is None:
            using = "YES" if handshake.auth_data else "NO"
            message = f"Access denied for user '{user}'@'{peer_host}' (using password: {using})"
            log.warning("admin login refused: %s", message)
            await connection.send(handshake.error_packet(c.ER_ACCESS_DENIED_ERROR, message, "28000"))
            return None
        await connection.send(handshake.ok_packet())
        return AdminSession(self.store, user=user, connection_id=handshake.connection_id, read_only=account[1])

    async def _commands(self, connection: _Connection, session: AdminSession) -> None:
        while True:
            packet = await connection.packet()
            if packet is None:
                return
            command = command_of(packet.payload) if packet.payload else -1
            if command == c.COM_QUIT:
                return
            if command in NO_ANSWER:
                continue
            await connection.send(self._answer(command, packet, session))

    def _answer(self, command: int, packet: Packet, session: AdminSession) -> bytes:
        handlers: dict[int, Callable[[], bytes]] = {
            c.COM_QUERY: lambda: self._query(query_text(packet.payload), session),
            c.COM_PING: lambda: encode_packet(build_ok(), 1),
            c.COM_INIT_DB: lambda: encode_packet(build_ok(), 1),
            c.COM_RESET_CONNECTION: lambda: encode_packet(build_ok(), 1),
            c.COM_SET_OPTION: lambda: encode_packet(build_eof(), 1),
            c.COM_STATISTICS: lambda: encode_packet(b"turnout admin interface", 1),
        }
        handler = handlers.get(command)
        if command in NOT_SUPPORTED:
            return encode_packet(build_err(ADMIN_ERROR, "Command not supported", ADMIN_SQLSTATE), 1)
        if handler is None:
            name = c.COMMAND_NAMES.get(command, hex(command))
            return encode_packet(build_err(c.ER_UNKNOWN_COM_ERROR, f"Unknown command {name}", "08S01"), 1)
        return handler()

    @staticmethod
    def _query(text: str, session: AdminSession) -> bytes:
        try:
            answer = session.execute(text)
        except AdminError as exc:
            return encode_packet(build_err(ADMIN_ERROR, ERROR_PREFIX + str(exc), ADMIN_SQLSTATE), 1)
        except Exception as exc:  # a bug must cost this statement, never the admin interface
            log.exception("admin statement failed: %s", text)
            return encode_packet(build_err(ADMIN_ERROR, f"{ERROR_PREFIX}internal error: {exc}", ADMIN_SQLSTATE), 1)
        if isinstance(answer, ResultSet):
            return build_text_resultset(answer.columns, answer.rows, seq=1)
        assert isinstance(answer, Ok)
        return encode_packet(build_ok(answer.affected_rows, answer.last_insert_id, warnings=len(answer.warnings)), 1)
