"""Detections: problems the analysis starts or stops finding, for the audit log (Orchestrator
keeps them as failure detections). Pure functions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from turnout.manager.analysis import Finding


@dataclass(frozen=True)
class Detection:
    cluster: str
    instance: str
    code: str
    appeared: bool
    description: str

    @property
    def message(self) -> str:
        if self.appeared:
            return f"{self.code} detected on {self.instance}: {self.description}"
        return f"{self.code} on {self.instance} cleared"


def problems(findings: Mapping[str, Iterable[Finding]]) -> dict[tuple[str, str, str], Finding]:
    return {(f.cluster, f.instance, f.code): f for found in findings.values() for f in found if f.is_problem}


def changes(before: Mapping[str, Iterable[Finding]], after: Mapping[str, Iterable[Finding]]) -> list[Detection]:
    """Problems found now and not before (appeared), and found before and not now (cleared), in a
    stable order: clusters, then instances."""
    old, new = problems(before), problems(after)
    appeared = [Detection(c, i, code, True, new[(c, i, code)].description)
                for (c, i, code) in new if (c, i, code) not in old]
    cleared = [Detection(c, i, code, False, old[(c, i, code)].description)
               for (c, i, code) in old if (c, i, code) not in new]
    return sorted(cleared + appeared, key=lambda d: (d.cluster, d.instance, d.appeared, d.code))
