"""Known, reported violations of Nova's response schemas that other work is fixing. Each entry names the
endpoint, the microversions it applies to, a fragment of the complaint and the reason (with its issue). The goal
is an empty list: an entry must go as soon as its fix lands (tests/unit/test_contract_oracle.py checks that
every entry has a reason)."""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from tests.contract.compute_schemas import version_tuple

if TYPE_CHECKING:
    from tests.contract.oracle import Violation


@dataclasses.dataclass(frozen=True)
class Known:
    method: str
    rule: str
    complaint: str  # a fragment of the schema's complaint
    reason: str
    action: str | None = None
    microversions: tuple[str, str] | None = None  # inclusive range, e.g. ("2.1", "2.74"); None: any

    def matches(self, v: "Violation") -> bool:
        if (v.method, v.rule, v.action) != (self.method, self.rule, self.action) or self.complaint not in v.complaint:
            return False
        if self.microversions is None:
            return True
        low, high = self.microversions
        return version_tuple(low) <= version_tuple(v.microversion) <= version_tuple(high)


KNOWN: list[Known] = []


def allowed(violation: "Violation") -> bool:
    return any(k.matches(violation) for k in KNOWN)
