"""Numbers as the report writes them: rounded to what they carry, p-values that never read 0.00,
plurals and lists that read as written by a person."""
import statistics

from study.findings import p_text


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


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 channel', '3 channels' (`words`: an irregular plural)."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def and_list(items: list[str], last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}" if items else ""


def seeds_words(seeds: list) -> str:
    """'seed 0' or 'seeds 0, 1 and 2'."""
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {and_list(seeds)}"


def median(values: list[float]) -> float:
    """The median (the mean of the two middle values for an even count)."""
    return statistics.median(values)


def seconds(value: float) -> str:
    return f"{value:.1f}"
