"""What a scenario reports: rows of ratios with their targets, and the run they came from."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from bench.inputs import ROOT
from bench.stats import Summary

RESULTS_DIR: Final = ROOT / "bench" / "results"


@dataclass
class Row:
    """One comparison: ``ratio`` is A relative to B, as the ``meaning`` says."""

    scenario: str
    name: str
    meaning: str
    ratio: Summary | None = None
    target: float | None = None
    direction: Literal[">=", "<="] = ">="
    #: Each side's own figure (median and spread), in ``unit``.
    sides: dict[str, Summary] = field(default_factory=dict)
    unit: str = ""
    #: The same ratio on CPU time, where it was measured: a cross-check on a busy machine.
    cpu_ratio: Summary | None = None
    note: str = ""
    unavailable: str | None = None

    @property
    def status(self) -> str:
        if self.unavailable is not None:
            return "unavailable"
        if self.ratio is None or self.target is None:
            return "-"
        reached = (
            self.ratio.median >= self.target
            if self.direction == ">="
            else self.ratio.median <= self.target
        )
        return "met" if reached else "missed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "name": self.name,
            "meaning": self.meaning,
            "ratio": self.ratio.as_dict() if self.ratio else None,
            "cpu_ratio": self.cpu_ratio.as_dict() if self.cpu_ratio else None,
            "target": self.target,
            "direction": self.direction,
            "status": self.status,
            "sides": {name: summary.as_dict() for name, summary in self.sides.items()},
            "unit": self.unit,
            "note": self.note,
            "unavailable": self.unavailable,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        def summary(value: dict[str, Any] | None) -> Summary | None:
            return Summary(**value) if value else None

        return cls(
            scenario=data["scenario"],
            name=data["name"],
            meaning=data["meaning"],
            ratio=summary(data["ratio"]),
            cpu_ratio=summary(data.get("cpu_ratio")),
            target=data["target"],
            direction=data["direction"],
            sides={name: Summary(**value) for name, value in data["sides"].items()},
            unit=data["unit"],
            note=data["note"],
            unavailable=data["unavailable"],
        )


@dataclass
class Run:
    """Everything one ``python -m bench`` produced."""

    quick: bool
    machine: dict[str, Any]
    #: Only some scenarios ran (``--only``): never taken for the document.
    partial: bool = False
    rows: list[Row] = field(default_factory=list)
    #: Scenario-specific tables (encoder settings, worker scaling, profiles...).
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    #: Later partial runs whose scenarios replaced this run's (see :meth:`updated_by`).
    updates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(row.scenario for row in self.rows))

    def updated_by(self, later: Run) -> Run:
        """This run with the rows and details of ``later``'s scenarios taken from ``later``
        (each in the place the scenario had), and a note of where they came from."""
        replaced = later.scenarios
        rows: list[Row] = []
        for row in self.rows:
            if row.scenario not in replaced:
                rows.append(row)
            elif not any(kept.scenario == row.scenario for kept in rows):
                rows.extend(new for new in later.rows if new.scenario == row.scenario)
        rows.extend(new for new in later.rows if new.scenario not in self.scenarios)
        details = {key: value for key, value in self.details.items() if key not in replaced}
        details.update(later.details)
        note = {
            "scenarios": replaced,
            "started": later.started,
            "finished": later.finished,
            "load_average": later.machine.get("load_average"),
            "load_average_end": later.machine.get("load_average_end"),
        }
        return Run(
            quick=self.quick,
            machine=self.machine,
            partial=self.partial,
            rows=rows,
            details=details,
            started=self.started,
            finished=self.finished,
            updates=[*self.updates, note],
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "partial": self.partial,
            "started": self.started,
            "finished": self.finished,
            "machine": self.machine,
            "rows": [row.as_dict() for row in self.rows],
            "details": self.details,
            "updates": self.updates,
        }

    def save(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.started))
        kind = "partial" if self.partial else "quick" if self.quick else "full"
        path = RESULTS_DIR / f"{kind}-{stamp}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2))
        (RESULTS_DIR / "latest.json").write_text(json.dumps(self.as_dict(), indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Run:
        data = json.loads(path.read_text())
        return cls(
            quick=data["quick"],
            partial=data.get("partial", False),
            machine=data["machine"],
            rows=[Row.from_dict(row) for row in data["rows"]],
            details=data["details"],
            started=data["started"],
            finished=data["finished"],
            updates=data.get("updates", []),
        )
