"""Counts and lists that read as written by a person: '3 channels', 'a, b and c'."""


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
