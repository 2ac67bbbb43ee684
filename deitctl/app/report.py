"""``deitctl report``: a Table 3-style comparison of finished runs (``deitctl.records.report``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deitctl.records.report import Report, build_report


@dataclass
class ReportRequest:
    runs: list[Path]
    out: Path = Path("report.md")
    dataset: str | None = None


def run(req: ReportRequest) -> Report:
    return build_report(req.runs, req.out, dataset=req.dataset)
