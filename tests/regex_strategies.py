"""One Hypothesis regex strategy per pattern for a fuzz run, instead of one per operation and generation mode.

Hypothesis builds a regex's strategy character by character, which is slow for Nova's exact name patterns
(character classes of the printable Basic Multilingual Plane, app/compute/names.py). Schemathesis asks for a new one
for every operation and mode with an alphabet object it creates anew, so Hypothesis's own strategy cache misses:
generating the 8,008 cases of the in-process fuzz test (tests/unit/test_openapi.py) took 122 s of CPU, and 83 s
with each of its 21 distinct strategies built once (154 builds before). A strategy is immutable and its draws
depend only on the data, so reusing the one built for the same (pattern, flags, fullmatch, alphabet) generates
exactly the same cases."""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hypothesis.strategies._internal import regex as hypothesis_regex
from hypothesis.strategies._internal.lazy import unwrap_strategies
from hypothesis.strategies._internal.strings import OneCharStringStrategy

if TYPE_CHECKING:
    import pytest


def cached_regex_builder() -> tuple[Callable[..., Any], dict[tuple, Any]]:
    """A stand-in for Hypothesis's regex strategy builder that builds each (pattern, flags, fullmatch, alphabet)
    once, and its cache (key -> strategy, to show how many were built)."""
    build = hypothesis_regex.regex_strategy
    cache: dict[tuple, Any] = {}

    def cached(regex: Any, fullmatch: bool, *, alphabet: Any, **kwargs: Any) -> Any:
        chars = unwrap_strategies(alphabet)  # st.from_regex's default alphabet comes lazy
        if not isinstance(chars, OneCharStringStrategy):  # a key we cannot state exactly: build it as before
            return build(regex, fullmatch, alphabet=alphabet, **kwargs)
        compiled = regex if isinstance(regex, re.Pattern) else re.compile(regex)
        key = (compiled.pattern, compiled.flags, fullmatch, chars.intervals, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = build(regex, fullmatch, alphabet=alphabet, **kwargs)
        return cache[key]
    return cached, cache


def reuse_regex_strategies(monkeypatch: pytest.MonkeyPatch) -> dict[tuple, Any]:
    """For this test (``st.from_regex`` imports the builder at each call); returns the cache."""
    cached, cache = cached_regex_builder()
    monkeypatch.setattr(hypothesis_regex, "regex_strategy", cached)
    return cache
