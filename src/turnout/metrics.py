"""Prometheus metrics of the proxy, as ProxySQL's exporter serves them: `GET /metrics` on
`admin-restapi_port` while `admin-restapi_enabled` and `admin-prometheus_exporter` are true.

Each scrape reads the same stats tables the admin interface shows (every `--workers` process
merged), so the two never disagree. aiohttp and prometheus_client are imported only when the
exporter is on: every turnout process imports this module, most never serve metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from turnout.config.model import RuntimeConfig
from turnout.proxy.proxy import parse_interface

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("turnout.metrics")

StatsSource = Callable[[str], list[dict[str, object]] | None]

# stats_mysql_global: Variable_Name -> (metric name, help); everything else is a gauge.
_GLOBAL_COUNTERS = {
    "Client_Connections_created": ("client_connections_created", "Client connections accepted"),
    "Client_Connections_aborted": ("client_connections_aborted", "Client connections refused or failed at login"),
    "Questions": ("questions", "Statements received from clients"),
    "Backend_errors": ("backend_errors", "Errors connecting or talking to servers"),
    "Statements_refused_two_writers": ("statements_refused_two_writers", "Writes refused while two servers claimed to be writers"),
    "Statements_held": ("statements_held", "Statements that waited for a server (switchover, no server)"),
    "Statements_retried": ("statements_retried", "Statements retried on another connection"),
    "Statements_fast_path": ("statements_fast_path", "Statements relayed by the fast path"),
    "Statements_timed_out": ("statements_timed_out", "Statements killed at their query timeout"),
    "Metadata_restored": ("metadata_restored", "Results whose column definitions the proxy put back in (metadata caching)"),
    "Transactions_ended_by_switchover": ("transactions_ended_by_switchover", "Transactions ended by a graceful takeover"),
    "Transaction_replays": ("transaction_replays", "Lost transactions replayed on the new master"),
    "Transaction_replays_succeeded": ("transaction_replays_succeeded", "Replays whose every result matched: the client carried on"),
    "Transaction_replays_mismatched": ("transaction_replays_mismatched", "Replays ended by a result that differed (rolled back)"),
    "Transaction_replays_failed": ("transaction_replays_failed", "Replays that failed (no server, lost again, timeout)"),
    "Transaction_replays_refused": ("transaction_replays_refused", "Lost transactions not replayed (their record said why)"),
    "Transaction_replays_refused_unreproducible": ("transaction_replays_refused_unreproducible", "Not replayed: a statement's result cannot be reproduced (NOW(), RAND()...)"),
    "Transaction_replays_refused_too_large": ("transaction_replays_refused_too_large", "Not replayed: larger than mysql-transaction_replay_max_size"),
    "Causal_reads_caught_up": ("causal_reads_caught_up", "Causal reads on a replica known to have their writes"),
    "Causal_reads_waited": ("causal_reads_waited", "Causal reads on a replica after waiting there for their writes"),
    "Causal_reads_wait_timed_out": (
        "causal_reads_wait_timed_out", "Causal reads whose wait on a replica timed out, run on the writer"
    ),
    "Causal_reads_to_writer": ("causal_reads_to_writer", "Causal reads sent to the writer without a wait"),
    "Store_proxy_self_fences": ("store_proxy_self_fences", "Times the proxy fenced itself off from the state store"),
    "Store_proxy_renewals": ("store_proxy_renewals", "Lease renewals in the state store"),
    "Store_proxy_renew_failures": ("store_proxy_renew_failures", "Lease renewals that failed"),
}
_GLOBAL_GAUGES = {
    "Client_Connections_connected": ("client_connections_connected", "Client connections open now"),
    "Server_Connections_connected": ("server_connections_connected", "Backend connections open now"),
    "ProxySQL_Uptime": ("uptime_seconds", "Seconds since the proxy started"),
    "Store_proxy_fenced": ("store_proxy_fenced", "1 while the proxy has fenced itself off from the state store"),
    "Store_proxy_registered": ("store_proxy_registered", "1 while the proxy holds a lease in the state store"),
    "Store_proxy_lease_age_ms": ("store_proxy_lease_age_ms", "Milliseconds since the last lease renewal began"),
}
_POOL_LABELS = ["hostgroup", "server"]


class ProxyCollector:
    """A prometheus_client collector over the stats tables."""

    def __init__(self, stats: StatsSource) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        yield from self._global()
        yield from self._pools()
        yield from self._commands()

    def _global(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for row in self.stats("stats_mysql_global") or []:
            name = str(row["Variable_Name"])
            try:
                value = float(str(row["Variable_Value"]))
            except ValueError:
                continue
            if name in _GLOBAL_COUNTERS:
                metric, text = _GLOBAL_COUNTERS[name]
                yield CounterMetricFamily(f"turnout_{metric}", text, value=value)
            else:
                metric, text = _GLOBAL_GAUGES.get(name, (name.lower(), f"stats_mysql_global {name}"))
                yield GaugeMetricFamily(f"turnout_{metric}", text, value=value)

    def _pools(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        rows = self.stats("stats_mysql_connection_pool") or []
        used = GaugeMetricFamily("turnout_pool_connections_used", "Backend connections in use", labels=_POOL_LABELS)
        free = GaugeMetricFamily("turnout_pool_connections_free", "Idle pooled backend connections", labels=_POOL_LABELS)
        opened = CounterMetricFamily("turnout_pool_connections_opened", "Backend connections opened", labels=_POOL_LABELS)
        failed = CounterMetricFamily("turnout_pool_connection_errors", "Backend connections that failed to open", labels=_POOL_LABELS)
        queries = CounterMetricFamily("turnout_pool_queries", "Statements sent to the server", labels=_POOL_LABELS)
        sent = CounterMetricFamily("turnout_pool_bytes_sent", "Bytes sent to the server", labels=_POOL_LABELS)
        received = CounterMetricFamily("turnout_pool_bytes_received", "Bytes received from the server", labels=_POOL_LABELS)
        latency = GaugeMetricFamily("turnout_pool_latency_seconds", "The monitor's last ping time", labels=_POOL_LABELS)
        online = GaugeMetricFamily("turnout_pool_server_online", "1 while the server takes traffic", labels=_POOL_LABELS)
        for row in rows:
            labels = [str(row["hostgroup"]), f"{row['srv_host']}:{row['srv_port']}"]
            used.add_metric(labels, _number(row.get("ConnUsed")))
            free.add_metric(labels, _number(row.get("ConnFree")))
            opened.add_metric(labels, _number(row.get("ConnOK")))
            failed.add_metric(labels, _number(row.get("ConnERR")))
            queries.add_metric(labels, _number(row.get("Queries")))
            sent.add_metric(labels, _number(row.get("Bytes_data_sent")))
            received.add_metric(labels, _number(row.get("Bytes_data_recv")))
            latency.add_metric(labels, _number(row.get("Latency_us")) / 1e6)
            online.add_metric(labels, 1.0 if row.get("status") == "ONLINE" else 0.0)
        yield from (used, free, opened, failed, queries, sent, received, latency, online)

    def _commands(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        count = CounterMetricFamily("turnout_commands", "Statements by command", labels=["command"])
        seconds = CounterMetricFamily("turnout_commands_time_seconds", "Time spent by command", labels=["command"])
        for row in self.stats("stats_mysql_commands_counters") or []:
            if not _number(row.get("Total_cnt")):
                continue
            command = str(row["Command"])
            count.add_metric([command], _number(row.get("Total_cnt")))
            seconds.add_metric([command], _number(row.get("Total_Time_us")) / 1e6)
        yield from (count, seconds)


def _number(value: object) -> float:
    try:
        return float(str(value)) if value is not None else 0.0
    except ValueError:
        return 0.0


def exposition(stats: StatsSource) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector(stats))
    return bytes(generate_latest(registry))


def wanted_address(config: RuntimeConfig) -> tuple[str, int] | None:
    """Where the exporter listens under `config`, or None when it is off."""
    if not (config.bool_variable("admin-restapi_enabled", False) and config.bool_variable("admin-prometheus_exporter", False)):
        return None
    host, _ = parse_interface(config.variable("admin-mysql_ifaces", "127.0.0.1:6032"), 6032)
    return host, config.int_variable("admin-restapi_port", 6070)


class MetricsServer:
    """The exporter's HTTP listener, started and stopped as the admin variables ask."""

    def __init__(self, stats: StatsSource) -> None:
        self.stats = stats
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    async def apply(self, config: RuntimeConfig) -> None:
        wanted = wanted_address(config)
        if wanted == self.address:
            return
        await self.stop()
        if wanted is None:
            return
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, wanted[0], wanted[1]).start()
        except OSError as exc:
            await runner.cleanup()
            log.error("cannot serve metrics on %s:%d: %s (change admin-restapi_port)", wanted[0], wanted[1], exc)
            return
        self._runner, self.address = runner, wanted
        log.info("Prometheus metrics on http://%s:%d/metrics", *wanted)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner, self.address = None, None

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web
        from prometheus_client import CONTENT_TYPE_LATEST

        return web.Response(body=exposition(self.stats), headers={"Content-Type": CONTENT_TYPE_LATEST})
