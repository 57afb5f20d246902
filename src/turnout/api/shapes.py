"""Orchestrator's JSON shapes for turnout's values. Pure functions."""

from __future__ import annotations

import datetime
from typing import Any

from turnout.manager.analysis import Finding
from turnout.manager.recovery import RecoveryResult
from turnout.manager.takeover import TakeoverResult
from turnout.state.base import AuditEntry, ClusterState, RecoveryRecord
from turnout.topology.model import Instance, split_key


def response(code: str, message: str, details: Any = None) -> dict[str, Any]:
    """Orchestrator's APIResponse."""
    return {"Code": code, "Message": message, "Details": details}


def key(text: str | None) -> dict[str, Any]:
    if not text:
        return {"Hostname": "", "Port": 0}
    host, port = split_key(text)
    return {"Hostname": host, "Port": port}


def timestamp(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.datetime.fromtimestamp(value, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def null_int(value: int | float | None) -> dict[str, Any]:
    return {"Int64": int(value or 0), "Valid": value is not None}


def instance(inst: Instance, cluster: str, fenced: bool = False, downtime: Any = None,
             promotion_rule: str = "neutral", *, alias: str | None = None, errant: str = "",
             depth: int = 0, registered: bool = False) -> dict[str, Any]:
    """Orchestrator's Instance. `cluster` is the ClusterName (its master's key), `alias` the
    cluster's stable name in turnout."""
    gtid_mode = "ON" if (inst.executed_gtid_set or inst.using_gtid.lower() in ("slave_pos", "current_pos")) else "OFF"
    return {
        "Key": key(inst.key),
        "InstanceAlias": "",
        "ServerID": inst.server_id or 0,
        "Version": inst.version,
        "FlavorName": "MariaDB" if inst.flavor == "mariadb" else "MySQL",
        "ReadOnly": bool(inst.read_only),
        "SuperReadOnly": bool(inst.super_read_only),
        "Binlog_format": inst.binlog_format,
        "LogBinEnabled": bool(inst.binlog_file),
        "LogSlaveUpdatesEnabled": bool(inst.log_replica_updates),
        "LogReplicationUpdatesEnabled": bool(inst.log_replica_updates),
        "SelfBinlogCoordinates": {"LogFile": inst.binlog_file, "LogPos": inst.binlog_pos, "Type": 0},
        "MasterKey": key(inst.master_key),
        "IsDetachedMaster": False,
        "Slave_SQL_Running": bool(inst.sql_running),
        "ReplicationSQLThreadRuning": bool(inst.sql_running),
        "Slave_IO_Running": inst.io_running == "Yes",
        "ReplicationIOThreadRuning": inst.io_running == "Yes",
        "ReplicationSQLThreadState": 1 if inst.sql_running else (0 if inst.is_replica else -1),
        "ReplicationIOThreadState": {"Yes": 1, "Connecting": 2, "No": 0}.get(inst.io_running or "", -1),
        "GTIDMode": gtid_mode,
        "UsingMariaDBGTID": inst.using_gtid.lower() in ("slave_pos", "current_pos"),
        "UsingOracleGTID": inst.using_gtid == "Auto_Position",
        "UsingPseudoGTID": False,
        "SupportsOracleGTID": inst.flavor == "mysql",
        "ExecutedGtidSet": inst.executed_gtid_set or inst.gtid_current_pos,
        "GtidErrant": errant,
        "GtidCurrentPos": inst.gtid_current_pos,
        "GtidSlavePos": inst.gtid_slave_pos,
        "GtidBinlogPos": inst.gtid_binlog_pos,
        "GtidIOPos": inst.gtid_io_pos,
        "ReadBinlogCoordinates": {"LogFile": inst.master_log_file, "LogPos": inst.read_master_log_pos, "Type": 0},
        "ExecBinlogCoordinates": {"LogFile": inst.relay_master_log_file, "LogPos": inst.exec_master_log_pos,
                                  "Type": 0},
        "LastSQLError": inst.last_sql_error,
        "LastIOError": inst.last_io_error,
        "SecondsBehindMaster": null_int(inst.seconds_behind_master),
        "SQLDelay": inst.sql_delay,
        "SlaveLagSeconds": null_int(inst.seconds_behind_master),
        "ReplicationLagSeconds": null_int(inst.seconds_behind_master),
        "SlaveHosts": [key(k) for k in inst.replica_hosts],
        "Replicas": [key(k) for k in inst.replica_hosts],
        "ClusterName": cluster,
        "SuggestedClusterAlias": cluster if alias is None else alias,
        "DataCenter": "",
        "Region": "",
        "PhysicalEnvironment": "",
        "ReplicationDepth": depth,
        "IsCoMaster": False,
        "SemiSyncAvailable": inst.semi_sync_available,
        "SemiSyncMasterEnabled": inst.semi_sync_master_enabled,
        "SemiSyncReplicaEnabled": inst.semi_sync_replica_enabled,
        "SemiSyncMasterStatus": inst.semi_sync_master_enabled,
        "SemiSyncReplicaStatus": inst.semi_sync_replica_enabled and inst.is_replica,
        "SlaveNetTimeout": inst.slave_net_timeout,
        "HeartbeatPeriod": inst.heartbeat_period,
        "ConnectRetry": inst.connect_retry,
        "IsLastCheckValid": inst.reachable,
        "IsUpToDate": inst.reachable,
        "IsRecentlyChecked": inst.reachable,
        "LastSeenTimestamp": timestamp(inst.last_seen),
        "LastCheckedTimestamp": timestamp(inst.last_checked),
        "LastProbeError": inst.last_probe_error,
        "LastDiscoveryLatency": int((inst.probe_ms or 0) * 1_000_000),
        "IsCandidate": registered,
        "PromotionRule": promotion_rule,
        "IsDowntimed": downtime is not None,
        "DowntimeReason": getattr(downtime, "reason", ""),
        "DowntimeOwner": getattr(downtime, "owner", ""),
        "DowntimeEndTimestamp": timestamp(getattr(downtime, "ends_at", None)),
        "Problems": [],
        "IsFenced": fenced,
    }


def cluster_info(state: ClusterState, count: int, auto_recovery: bool) -> dict[str, Any]:
    """Orchestrator's ClusterInfo: the cluster is named after its current master; the alias is
    turnout's cluster name, which stays the same across failovers."""
    return {
        "ClusterName": state.master,
        "ClusterAlias": state.name,
        "ClusterDomain": "",
        "CountInstances": count,
        "HeuristicLag": 0,
        "HasAutomatedMasterRecovery": auto_recovery,
        "HasAutomatedIntermediateMasterRecovery": False,
        "Master": key(state.master),
        "Epoch": state.epoch,
        "Phase": state.phase,
        "Members": [key(m) for m in state.members],
        "UpdatedAt": timestamp(state.updated_at),
    }


def analysis(finding: Finding, master_of: str | None, cluster_master: str | None = None) -> dict[str, Any]:
    return {
        "AnalyzedInstanceKey": key(finding.instance),
        "AnalyzedInstanceMasterKey": key(master_of),
        "ClusterDetails": {"ClusterName": cluster_master or finding.cluster, "ClusterAlias": finding.cluster,
                           "ClusterDomain": ""},
        "IsMaster": finding.is_master,
        "IsCoMaster": False,
        "CountReplicas": finding.count_replicas,
        "CountValidReplicas": finding.count_valid_replicas,
        "CountValidReplicatingReplicas": finding.count_replicating_replicas,
        "CountReplicasReachingMaster": finding.count_replicas_reaching_master,
        "Replicas": [key(r) for r in finding.replicas],
        "Analysis": finding.code,
        "Description": finding.description,
        "IsDowntimed": finding.downtimed,
        "IsActionableRecovery": finding.recoverable_master_failure,
    }


def recovery_record(rec: RecoveryRecord) -> dict[str, Any]:
    return {
        "Id": rec.id,
        "UID": str(rec.id),
        "AnalysisEntry": {"AnalyzedInstanceKey": key(rec.failed), "Analysis": rec.failure_type,
                          "ClusterDetails": {"ClusterName": rec.failed, "ClusterAlias": rec.cluster}},
        "SuccessorKey": key(rec.successor) if rec.successor else None,
        "IsActive": rec.ended_at is None,
        "IsSuccessful": rec.success,
        "IsManual": rec.manual,
        "RecoveryStartTimestamp": timestamp(rec.started_at),
        "RecoveryEndTimestamp": timestamp(rec.ended_at),
        "Acknowledged": rec.acknowledged,
        "AcknowledgedAt": timestamp(rec.acknowledged_at),
        "AcknowledgedBy": rec.acknowledged_by or "",
        "AcknowledgedComment": rec.acknowledge_comment or "",
        "AllErrors": [],
        "Steps": list(rec.details),
    }


def recovery_result(result: RecoveryResult) -> dict[str, Any]:
    return {
        "Id": result.recovery_id,
        "UID": str(result.recovery_id or ""),
        "AnalysisEntry": {"AnalyzedInstanceKey": key(result.failed), "Analysis": result.failure_type,
                          "ClusterDetails": {"ClusterName": result.failed, "ClusterAlias": result.cluster}},
        "SuccessorKey": key(result.successor) if result.successor else None,
        "IsSuccessful": result.success,
        "LostReplicas": [key(k) for k in result.lost_replicas],
        "Message": result.message,
        "Steps": result.steps,
        "Epoch": result.state.epoch if result.state else None,
    }


def takeover_result(result: TakeoverResult) -> dict[str, Any]:
    return {
        "SuccessorKey": key(result.new_master),
        "FormerMasterKey": key(result.old_master),
        "IsSuccessful": result.success,
        "RolledBack": result.rolled_back,
        "Message": result.message,
        "Steps": result.steps,
        "Epoch": result.state.epoch if result.state else None,
    }


def audit_entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "AuditId": entry.id,
        "AuditTimestamp": timestamp(entry.at),
        "AuditType": entry.action,
        "AuditInstanceKey": key(entry.instance),
        "ClusterName": entry.cluster,
        "Message": entry.message,
    }
