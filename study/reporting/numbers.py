"""Numbers as the report writes them: rounded to what they carry, p-values that never read 0.00."""
import statistics

from study.analysis.findings import p_text


def pct(value: float) -> str:
    return f"{value:.2f}"


def db(value: float) -> str:
    return f"{value:.2f}"


def r2(value: float) -> str:
    return f"{value:+.2f}"


def spread(stat: dict) -> str:
    return f"{stat['mean']:.2f} ± {stat['sd']:.2f}" if stat.get("sd") is not None else f"{stat['mean']:.2f}"


def p_value(value: float) -> str:
    """A p-value with its relation, to the precision it carries: 'p < 0.001', 'p = 0.004'."""
    return p_text(value)


def p_cell(value: float) -> str:
    """A p-value for a table cell: '< 0.001', '0.004', '0.31' (never '0.00')."""
    return p_text(value).removeprefix("p = ").removeprefix("p ")


def median(values: list[float]) -> float:
    """The median (the mean of the two middle values for an even count)."""
    return statistics.median(values)


def seconds(value: float) -> str:
    return f"{value:.1f}"
