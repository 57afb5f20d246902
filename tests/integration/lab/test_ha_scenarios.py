"""HA scenarios on the multi-host lab: the 2018 partition, a leader killed, then its master.

Each prints the figures the README quotes (write pauses, client errors, partition -> self-fence
and -> the new master's first write)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import SandboxFactory
from integration.ha.ha_harness import wait_until
from integration.lab.ha_lab import LAB_TIMINGS as TIMINGS
from integration.lab.ha_lab import api, deploy, leads, rows, writers

pytestmark = [pytest.mark.netns, pytest.mark.sandbox]


def report(scenario: str, **figures: Any) -> None:
    """One line bench/ha_scenarios.py collects."""
    print("HA-RESULT " + json.dumps({"scenario": scenario, **figures}))


def test_the_2018_partition_cannot_split_the_brain(make_lab_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_lab_sandbox(replicas=2, semi_sync=True, etcd=3)
    ha = deploy(box, tmp_path)
    try:
        a, b = writers(ha, "proxy-a", "proxy-b")
        wait_until(lambda: len(a.acked) > 20 and len(b.acked) > 20, "writes through both proxies")
        # {old master, proxy A and its clients} | {etcd majority, managers, replicas, proxy B}
        cut_at = time.time()
        box.lab.partition(["node0,proxy-a", "node1,node2,etcd0,etcd1,etcd2,mgr1,mgr2,proxy-b"])
        wait_until(lambda: ha.global_status("proxy-a", "Store_proxy_fenced") == "1", "proxy A to fence itself")
        fenced_at = time.time()
        wait_until(lambda: ha.master("mgr1") != box.nodes[0].address and ha.phase("mgr1") == "stable",
                   "the managers to promote a replica", 120)
        new = ha.master("mgr1")
        new_index = box.index_of(new)
        wait_until(lambda: any(t > fenced_at for _, t in b.acked), "writes through proxy B on the new master", 60)
        time.sleep(2)
        box.lab.heal()
        healed_at = time.time()
        # Proxy A comes back by itself and writes to the new master.
        wait_until(lambda: any(t > healed_at for _, t in a.acked), "proxy A to write again", 90)
        time.sleep(1)
        for writer in (a, b):
            writer.finish()

        on_new, on_old = rows(box, new_index), rows(box, 0)
        acked = {i for w in (a, b) for i, _ in w.acked}
        missing = sorted(acked - on_new.keys())
        assert missing == [], f"acknowledged writes missing on the new master: {missing[:20]}"
        first_on_new = min(at for i, at in on_new.items() if i not in on_old)
        late_on_old = sorted(i for i, at in on_old.items() if at >= first_on_new)
        assert late_on_old == [], f"transactions applied on the old master after the new master's first write: {late_on_old}"
        last_ack_a = max(t for _, t in a.acked if t < healed_at)
        assert last_ack_a < first_on_new, "proxy A stopped acknowledging writes before the new master took its first"
        # Fenced in the store: no proxy sends it anything. read_only=ON waits behind the commits that
        # hang there for a semi-sync acknowledgement that never comes (README: semi-sync trade-off).
        status, old = api(ha.hosts["mgr1"], f"instance/{box.nodes[0].host}/3306")
        assert status == 200 and old["IsFenced"], old
        after_heal = [i for i, t in a.acked if t > healed_at]
        assert after_heal and all(i in on_new for i in after_heal), "proxy A writes to the new master"

        errors_a = [m for t, m in a.errors if cut_at <= t]
        errors_b = [m for t, m in b.errors if cut_at <= t]
        print(f"\n2018 partition: proxy A self-fenced {fenced_at - cut_at:.2f}s after the cut; the new master took its "
              f"first write {first_on_new - cut_at:.2f}s after it (proxy A's last acknowledgement "
              f"{last_ack_a - cut_at:+.2f}s); proxy B's longest write pause {b.longest_pause(cut_at, healed_at):.2f}s, "
              f"{len(errors_b)} client errors; proxy A: {len(errors_a)} client errors, writing again "
              f"{min(t for _, t in a.acked if t > healed_at) - healed_at:.2f}s after the heal; "
              f"acknowledged writes {len(acked)}, missing 0")
        report("partition-2018", self_fence_s=fenced_at - cut_at, new_master_first_write_s=first_on_new - cut_at,
               proxy_a_last_ack_s=last_ack_a - cut_at, write_pause_b_s=b.longest_pause(cut_at, healed_at),
               errors_a=len(errors_a), errors_b=len(errors_b),
               proxy_a_back_after_heal_s=min(t for _, t in a.acked if t > healed_at) - healed_at,
               acknowledged=len(acked), missing=0, late_on_old_master=0)
        for message in sorted(set(errors_a))[:3]:
            print("  proxy A error:", message[:200])
        for message in sorted(set(errors_b))[:3]:
            print("  proxy B error:", message[:200])
    except BaseException:
        _diagnose(ha)
        raise
    finally:
        ha.stop()


def _diagnose(ha) -> None:  # type: ignore[no-untyped-def]
    for index in (1, 2):
        try:
            status = ha.box.replica_status(index) or {}
            print(f"node{index}", {k: status.get(k) for k in ("Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error",
                                                          "Last_SQL_Error", "Master_Host")})
        except Exception as exc:
            print(index, exc)
    for host in ("mgr1",):
        try:
            print(host, "analysis", api(ha.hosts[host], "replication-analysis?settings=1"))
            print(host, "clusters", api(ha.hosts[host], "clusters-info"))
            for entry in list(reversed(api(ha.hosts[host], "audit?limit=2000")[1]))[:40]:
                print(host, entry["AuditTimestamp"], entry["AuditType"], entry["Message"][:220])
        except Exception as exc:
            print(host, "unreachable", exc)


def test_leader_kill_then_master_kill(make_lab_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_lab_sandbox(replicas=2, semi_sync=True, etcd=3)
    ha = deploy(box, tmp_path)
    try:
        a, b = writers(ha, "proxy-a", "proxy-b")
        wait_until(lambda: len(a.acked) > 20 and len(b.acked) > 20, "writes through both proxies")
        killed = time.time()
        ha.procs["mgr1"].kill()
        wait_until(lambda: leads(ha.hosts["mgr2"]), "mgr2 to lead", 60)
        took = time.time() - killed
        bound = TIMINGS["LeaderLeaseSeconds"] + TIMINGS["LeaderRenewSeconds"]
        assert took < bound + 5, f"{took:.1f}s (TTL + renew {bound:g}s)"
        master_killed = time.time()
        box.kill(0)
        wait_until(lambda: ha.master("mgr2") != box.nodes[0].address and ha.phase("mgr2") == "stable",
                   "mgr2 to recover the master", 120)
        new_index = box.index_of(ha.master("mgr2"))
        wait_until(lambda: all(any(t > master_killed + 0.5 for _, t in w.acked) for w in (a, b)),
                   "both proxies to write to the new master", 60)
        time.sleep(1)
        for writer in (a, b):
            writer.finish()
        on_new = rows(box, new_index)
        acked = {i for w in (a, b) for i, _ in w.acked}
        assert sorted(acked - on_new.keys()) == []
        status, records = api(ha.hosts["mgr2"], "audit-recovery")
        assert status == 200 and len(records) == 1
        report("leader-kill-then-master-kill", new_leader_s=took, write_pause_a_s=a.longest_pause(master_killed, time.time()),
               write_pause_b_s=b.longest_pause(master_killed, time.time()),
               errors=len([1 for w in (a, b) for t, _ in w.errors if t > master_killed]), acknowledged=len(acked), missing=0)
        print(f"\nleader kill -9 -> mgr2 led after {took:.2f}s (TTL + renew {bound:g}s); master kill -9 -> writes "
              f"paused {a.longest_pause(master_killed, time.time()):.2f}s via A, "
              f"{b.longest_pause(master_killed, time.time()):.2f}s via B; client errors "
              f"{len([1 for t, _ in a.errors if t > master_killed])} / "
              f"{len([1 for t, _ in b.errors if t > master_killed])}; acknowledged {len(acked)}, missing 0")
    except BaseException:
        _diagnose(ha)
        raise
    finally:
        ha.stop()


def test_leader_cut_from_etcd_but_not_from_mysql(make_lab_sandbox: SandboxFactory, tmp_path: Path) -> None:
    box = make_lab_sandbox(replicas=2, semi_sync=True, etcd=3)
    ha = deploy(box, tmp_path)
    try:
        cut_at = time.time()
        box.lab.partition(["mgr1", "etcd0,etcd1,etcd2"])  # mgr1 still reaches every MySQL server
        wait_until(lambda: not leads(ha.hosts["mgr1"]), "mgr1 to step down")
        stepped_down = time.time() - cut_at
        wait_until(lambda: leads(ha.hosts["mgr2"]), "mgr2 to lead", 60)
        led = time.time() - cut_at
        assert stepped_down < TIMINGS["LeaderLeaseSeconds"]
        box.kill(0)
        wait_until(lambda: ha.master("mgr2") != box.nodes[0].address and ha.phase("mgr2") == "stable",
                   "mgr2 to recover the master", 120)
        status, records = api(ha.hosts["mgr2"], "audit-recovery")
        assert status == 200 and len(records) == 1, records
        assert not leads(ha.hosts["mgr1"])
        report("leader-cut-from-etcd", stepped_down_s=stepped_down, other_led_s=led, recoveries=len(records))
        print(f"\nleader cut from etcd: stepped down after {stepped_down:.2f}s, mgr2 led after {led:.2f}s; "
              "the master's death was recovered once, by mgr2")
    except BaseException:
        _diagnose(ha)
        raise
    finally:
        ha.stop()


def test_one_etcd_member_down_changes_nothing_and_quorum_loss_stops_failover(
    make_lab_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    box = make_lab_sandbox(replicas=2, semi_sync=True, etcd=3)
    ha = deploy(box, tmp_path)
    try:
        a, b = writers(ha, "proxy-a", "proxy-b")
        wait_until(lambda: len(a.acked) > 20 and len(b.acked) > 20, "writes through both proxies")
        one_down = time.time()
        box.etcd.kill(2)
        time.sleep(3 * TIMINGS["LeaderLeaseSeconds"])
        window = (one_down, time.time())
        assert [m for t, m in a.errors + b.errors if t >= one_down] == [], "one member down: no client error"
        assert {ha.global_status(p, "Store_proxy_self_fences") for p in ("proxy-a", "proxy-b")} == {"0"}
        assert leads(ha.hosts["mgr1"])
        pauses = (a.longest_pause(*window), b.longest_pause(*window))

        quorum_lost = time.time()
        box.etcd.kill(1)
        wait_until(lambda: all(ha.global_status(p, "Store_proxy_fenced") == "1" for p in ("proxy-a", "proxy-b")),
                   "both proxies to fence themselves")
        fenced_after = time.time() - quorum_lost
        box.kill(0)
        time.sleep(3 * TIMINGS["LeaderLeaseSeconds"])
        for index in (1, 2):  # no failover without a quorum: both still replicas, read_only
            assert box.replica_status(index) is not None
            assert box.execute(index, "SELECT @@read_only AS ro")[0]["ro"] == 1
        errors_without_quorum = len([1 for t, _ in a.errors + b.errors if t >= quorum_lost])
        acks_without_quorum = len([1 for w in (a, b) for _, t in w.acked if t >= quorum_lost + fenced_after + 0.5])
        assert acks_without_quorum == 0

        restored = time.time()
        box.etcd.start(1)
        box.etcd.start(2)
        wait_until(lambda: ha.master("mgr1") != box.nodes[0].address and ha.phase("mgr1") == "stable",
                   "the recovery once the quorum is back", 120)
        wait_until(lambda: all(any(t > restored for _, t in w.acked) for w in (a, b)), "writes again", 60)
        back = min(t for w in (a, b) for _, t in w.acked if t > restored) - restored
        for writer in (a, b):
            writer.finish()
        on_new = rows(box, box.index_of(ha.master("mgr1")))
        acked = {i for w in (a, b) for i, _ in w.acked}
        assert sorted(acked - on_new.keys()) == []
        report("etcd-member-down-then-quorum-lost", member_down_write_pause_s=max(pauses), member_down_errors=0,
               quorum_lost_self_fence_s=fenced_after, quorum_lost_errors=errors_without_quorum,
               quorum_lost_acknowledged=0, failover_without_quorum=False, quorum_back_writes_s=back,
               acknowledged=len(acked), missing=0)
        print(f"\netcd member down: longest write pause {max(pauses):.2f}s, 0 client errors; quorum lost: both "
              f"proxies fenced themselves after {fenced_after:.2f}s, every write after that failed "
              f"({errors_without_quorum} client errors, 0 acknowledged), the dead master was not replaced; quorum "
              f"back: writes again after {back:.2f}s; acknowledged {len(acked)}, missing 0")
    except BaseException:
        _diagnose(ha)
        raise
    finally:
        ha.stop()
