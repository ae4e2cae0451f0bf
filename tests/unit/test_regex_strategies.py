"""tests/regex_strategies.py: a pattern's strategy is built once per alphabet and draws what a new one draws."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies._internal import regex as hypothesis_regex
from hypothesis.strategies._internal.strings import OneCharStringStrategy

from tests.regex_strategies import reuse_regex_strategies

PATTERN = r"^[a-z\u00e0-\u00ff]([a-z\u00e0-\u00ff ]*[a-z])?$"


def _strategy(codec: str, lazy: bool = False) -> st.SearchStrategy[str]:
    """The strategy asked for as ``st.from_regex`` asks: with a new alphabet object, resolved, or ``lazy`` as its
    default alphabet."""
    chars = st.characters(codec=codec)
    alphabet = chars if lazy else OneCharStringStrategy.from_alphabet(chars)
    return hypothesis_regex.regex_strategy(PATTERN, True, alphabet=alphabet)


def _draws(strategy: st.SearchStrategy[str]) -> list[str]:
    seen: list[str] = []

    @settings(max_examples=30, derandomize=True, database=None)
    @given(strategy)
    def run(value: str) -> None:
        seen.append(value)
    run()
    return seen


def test_a_pattern_is_built_once_per_alphabet_and_draws_the_same(monkeypatch):
    built = _draws(_strategy("utf-8"))
    cache = reuse_regex_strategies(monkeypatch)
    first = _strategy("utf-8")
    assert _draws(first) == built and len(cache) == 1
    assert _strategy("utf-8") is first and _strategy("utf-8", lazy=True) is first  # from the cache
    ascii_only = _draws(_strategy("ascii"))  # another alphabet is another strategy
    assert len(cache) == 2 and ascii_only != built and all(value.isascii() for value in ascii_only)
