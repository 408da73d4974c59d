"""One table: every scenario with its rate, latency, errors, worker memory and ratios."""

from __future__ import annotations

from dataclasses import dataclass

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
    floor: str | None = None

    @classmethod
    def from_result(cls, scenario: str, config: str, result: Result, rss_mb: float,
                    floor: str | None = None) -> "Row":
        return cls(scenario, config, result.rate, result.p50_ms, result.p99_ms, result.failures, rss_mb, floor)


HEADER = ("scenario", "config", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB", "floor", "ratio", "vs peer")


def _cells(row: Row, floors: dict[str, Row], peer: Row | None) -> tuple[str, ...]:
    def number(value, digits=0):
        return "" if value is None else f"{value:,.{digits}f}"

    floor = floors.get(row.floor) if row.floor else None
    ratio = f"{row.rate / floor.rate:.2f}" if floor and floor.rate else ""
    versus = f"{row.rate / peer.rate:.2f}" if peer and peer.rate and row.scenario == "client_credentials" else ""
    return (row.scenario, row.config, number(row.rate), number(row.p50_ms, 1), number(row.p99_ms, 1),
            number(row.errors), number(row.rss_mb), f"{row.floor} {floor.rate:,.0f}/s" if floor else "",
            ratio, versus)


def render(rows: list[Row], floors: dict[str, Row], peer: Row | None, markdown: bool = False) -> str:
    """The floors and the peer first, then each issuer scenario with its ratios."""
    lines = [_cells(row, floors, None) for row in floors.values()]
    if peer is not None:
        lines.append(_cells(peer, floors, None))
    lines += [_cells(row, floors, peer) for row in rows]
    if markdown:
        out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        out += ["| " + " | ".join(cells) + " |" for cells in lines]
        return "\n".join(out)
    widths = [max(len(cells[i]) for cells in [HEADER, *lines]) for i in range(len(HEADER))]
    text = ["  ".join(cell.ljust(width) if i < 2 else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(cells, widths))) for cells in [HEADER, *lines]]
    return "\n".join([text[0], "-" * len(text[0]), *text[1:]])
