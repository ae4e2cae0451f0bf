"""tests/regex_strategies.py: a pattern's strategy is built once per alphabet and draws what a new one draws."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies._internal import regex as hypothesis_regex
from hypothesis.strategies._internal.strings import OneCharStringStrategy

from tests.regex_strategies import reuse_regex_strategies

PATTERN = r"^[a-z\u00e0-\u00ff]([a-z\u00e0-\u00ff ]*[a-z])?$"


def _draws(codec: str) -> list[str]:
    """30 values of a strategy asked for as ``st.from_regex`` asks (a new alphabet object each time)."""
    alphabet = OneCharStringStrategy.from_alphabet(st.characters(codec=codec))
    seen: list[str] = []

    @settings(max_examples=30, derandomize=True, database=None)
    @given(hypothesis_regex.regex_strategy(PATTERN, True, alphabet=alphabet))
    def run(value: str) -> None:
        seen.append(value)
    run()
    return seen


def test_a_pattern_is_built_once_per_alphabet_and_draws_the_same(monkeypatch):
    built = _draws("utf-8")
    cache = reuse_regex_strategies(monkeypatch)
    assert _draws("utf-8") == built and len(cache) == 1  # built and cached
    assert _draws("utf-8") == built and len(cache) == 1  # from the cache
    ascii_only = _draws("ascii")  # another alphabet is another strategy
    assert len(cache) == 2 and ascii_only != built and all(value.isascii() for value in ascii_only)
