"""The acknowledged-write checker's verdicts: writes missing on the master, writes found twice."""

from __future__ import annotations

from turnout.workload import checker_schema, duplicated_writes, missing_writes


def test_missing_writes_are_the_acknowledged_ones_not_found() -> None:
    acknowledged = {(0, 1), (0, 2), (1, 1)}
    assert missing_writes(acknowledged, [(0, 1), (1, 1), (1, 2)]) == {(0, 2)}
    assert missing_writes(acknowledged, [(0, 1), (0, 2), (1, 1)]) == set()


def test_duplicated_writes_count_each_write_found_more_than_once() -> None:
    assert duplicated_writes([(0, 1), (0, 2), (1, 1)]) == {}
    assert duplicated_writes([(0, 1), (0, 1), (1, 1), (0, 1), (1, 1)]) == {(0, 1): 3, (1, 1): 2}


def test_the_checker_table_does_not_refuse_a_duplicate() -> None:
    database, table = checker_schema("chaos.acks")
    assert database == "CREATE DATABASE IF NOT EXISTS chaos"
    assert "PRIMARY KEY" in table and "AUTO_INCREMENT" in table and "KEY (writer, seq)" in table
    assert "UNIQUE" not in table and "PRIMARY KEY (writer" not in table
