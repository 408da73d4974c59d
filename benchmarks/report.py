"""One table: the references (floors, peer), then every scenario with its rate, latency, errors,
worker memory, its ratios to the floor and (client credentials) the peer measured just before it,
and the CPU time the server's processes spent per answered request."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import mean

from .load import Result


@dataclass
class Row:
    scenario: str
    config: str
    rate: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int | None = None
    rss_mb: float | None = None
    floor: str | None = None  # "L2" / "L3"
    floor_rate: float | None = None
    peer_rate: float | None = None
    cpu_ms: float | None = None  # CPU time of the server's workers (the peer's process) per request

    @classmethod
    def from_result(cls, scenario: str, config: str, result: Result, rss_mb: float, cpu_seconds: float,
                    **extra) -> "Row":
        cpu_ms = cpu_seconds * 1000 / result.requests if result.requests else None
        return cls(scenario, config, result.rate, result.p50_ms, result.p99_ms, result.failures, rss_mb,
                   cpu_ms=cpu_ms, **extra)

    @classmethod
    def mean(cls, rows: list["Row"], note: str) -> "Row":
        cpu = [r.cpu_ms for r in rows if r.cpu_ms is not None]
        return cls(rows[0].scenario, f"{rows[0].config}, {note}", mean(r.rate for r in rows),
                   mean(r.p50_ms for r in rows), mean(r.p99_ms for r in rows), sum(r.errors for r in rows),
                   max(r.rss_mb for r in rows), cpu_ms=mean(cpu) if cpu else None)


HEADER = ("scenario", "config", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB", "floor", "ratio", "vs peer",
          "CPU ms/req")


def _number(value, digits=0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _cells(row: Row) -> tuple[str, ...]:
    ratio = f"{row.rate / row.floor_rate:.2f}" if row.floor_rate else ""
    versus = f"{row.rate / row.peer_rate:.2f}" if row.peer_rate else ""
    floor = f"{row.floor} {row.floor_rate:,.0f}/s" if row.floor_rate else ""
    return (row.scenario, row.config, _number(row.rate), _number(row.p50_ms, 1), _number(row.p99_ms, 1),
            _number(row.errors), _number(row.rss_mb), floor, ratio, versus, _number(row.cpu_ms, 2))


def render(references: list[Row], rows: list[Row], markdown: bool = False) -> str:
    lines = [_cells(row) for row in [*references, *rows]]
    if markdown:
        out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]
    text = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(cells, widths))) for cells in [HEADER, *lines]]
    return "\n".join([text[0], "-" * len(text[0]), *text[1:]])
