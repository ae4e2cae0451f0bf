"""oslo.policy-style check strings: parsing and evaluation (no Flask, no DB).

Grammar (as oslo.policy): ``@`` (always), ``!`` (never), ``role:<name>``, ``rule:<name>``, ``<attribute>:<value>``
where value may be ``%(<target key>)s`` or a literal, combined with ``and``, ``or``, ``not`` and parentheses.
An empty check string always passes. A ``rule:`` naming no known rule fails (fail closed).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Protocol, Union

# Roles imply lower ones (Keystone's 2024.2 bootstrap rules): admin -> manager -> member -> reader; the service
# role implies nothing. DIRECT_IMPLIED are the rules, IMPLIED_ROLES everything each role implies.
DIRECT_IMPLIED: dict[str, tuple[str, ...]] = {"admin": ("manager",), "manager": ("member",), "member": ("reader",)}


def _closure(role: str) -> tuple[str, ...]:
    out: list[str] = []
    todo = list(DIRECT_IMPLIED.get(role, ()))
    while todo:
        name = todo.pop(0)
        if name not in out:
            out.append(name)
            todo.extend(DIRECT_IMPLIED.get(name, ()))
    return tuple(out)


IMPLIED_ROLES: dict[str, tuple[str, ...]] = {role: _closure(role) for role in DIRECT_IMPLIED}
_MAX_DEPTH = 30


class PolicyError(ValueError):
    """A policy file or check string that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Const:
    value: bool


@dataclasses.dataclass(frozen=True)
class Atom:
    kind: str  # "role" | "rule" | an attribute of the credentials
    match: str


@dataclasses.dataclass(frozen=True)
class Not:
    operand: "Check"


@dataclasses.dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple["Check", ...]


Check = Union[Const, Atom, Not, BoolOp]
_SUBST = re.compile(r"%\((\w+)\)s")


def _tokens(text: str) -> list[str]:
    """Whitespace-separated words; parentheses at a word's start or end are tokens of their own (oslo)."""
    out: list[str] = []
    for word in (text or "").split():
        lead = len(word) - len(word.lstrip("("))
        core = word.lstrip("(")
        trail = len(core) - len(core.rstrip(")"))
        core = core.rstrip(")")
        out.extend(["("] * lead + ([core] if core else []) + [")"] * trail)
    return out


def parse(text: str) -> Check:
    tokens = _tokens(text)
    if not tokens:
        return Const(True)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def expr_or() -> Check:
        parts = [expr_and()]
        while peek() == "or":
            take()
            parts.append(expr_and())
        return parts[0] if len(parts) == 1 else BoolOp("or", tuple(parts))

    def expr_and() -> Check:
        parts = [expr_not()]
        while peek() == "and":
            take()
            parts.append(expr_not())
        return parts[0] if len(parts) == 1 else BoolOp("and", tuple(parts))

    def expr_not() -> Check:
        if peek() == "not":
            take()
            return Not(expr_not())
        return primary()

    def primary() -> Check:
        tok = peek()
        if tok is None:
            raise PolicyError(f"unexpected end of check string {text!r}")
        take()
        if tok == "(":
            inner = expr_or()
            if peek() != ")":
                raise PolicyError(f"missing ')' in check string {text!r}")
            take()
            return inner
        if tok in (")", "and", "or"):
            raise PolicyError(f"unexpected {tok!r} in check string {text!r}")
        if tok == "@":
            return Const(True)
        if tok == "!":
            return Const(False)
        kind, sep, match = tok.partition(":")
        if not sep or not kind or not match:
            raise PolicyError(f"invalid check {tok!r} in check string {text!r} (expected kind:match, '@' or '!')")
        return Atom(kind, match)

    result = expr_or()
    if peek() is not None:
        raise PolicyError(f"unexpected {peek()!r} in check string {text!r}")
    return result


def effective_roles(roles: tuple[str, ...] | list[str]) -> frozenset[str]:
    out = {r.lower() for r in roles}
    for r in list(out):
        out.update(IMPLIED_ROLES.get(r, ()))
    return frozenset(out)


class RuleSource(Protocol):
    def get(self, name: str) -> Check | None: ...


def evaluate(check: Check, target: Mapping[str, object], creds: Mapping[str, object],
             rules: RuleSource, depth: int = 0) -> bool:
    if depth > _MAX_DEPTH:
        return False  # a rule cycle: fail closed
    if isinstance(check, Const):
        return check.value
    if isinstance(check, Not):
        return not evaluate(check.operand, target, creds, rules, depth + 1)
    if isinstance(check, BoolOp):
        results = (evaluate(c, target, creds, rules, depth + 1) for c in check.operands)
        return all(results) if check.op == "and" else any(results)
    if check.kind == "rule":
        sub = rules.get(check.match)
        return sub is not None and evaluate(sub, target, creds, rules, depth + 1)
    if check.kind == "role":
        wanted = _substitute(check.match, target)
        return wanted is not None and wanted.lower() in creds.get("roles", frozenset())
    wanted = _substitute(check.match, target)
    have = creds.get(check.kind)
    return wanted is not None and have is not None and str(have) == wanted


def _substitute(match: str, target: Mapping[str, object]) -> str | None:
    """``%(key)s`` from the target; None (no match) when the target lacks the key or has None."""
    missing = False

    def sub(m: re.Match) -> str:
        nonlocal missing
        value = target.get(m.group(1))
        if value is None:
            missing = True
            return ""
        return str(value)

    out = _SUBST.sub(sub, match)
    return None if missing else out
