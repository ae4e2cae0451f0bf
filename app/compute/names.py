"""Nova's name formats (nova/api/validation/parameter_types.py), character for character: a name is made of
printable characters of the Basic Multilingual Plane (no control, format, unassigned or private-use character, no
line or paragraph separator), and may not start or end with a space character (category Zs) or a non-printable one.
An availability zone name has no ':'. Aggregate updates take Nova's ``name_with_leading_trailing_spaces``. The
patterns are written with \\uXXXX escapes, so the OpenAPI document can carry them as they are validated."""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

# Nova iterates range(0xFFFF): U+FFFF and the planes above are in no class, so never part of a name.
_CATEGORIES = [unicodedata.category(chr(code)) for code in range(0xFFFF)]


def _printable(code: int) -> bool:
    category = _CATEGORIES[code]
    return not category.startswith("C") and (not category.startswith("Z") or category == "Zs")


def _class(keep: Callable[[int], bool]) -> str:
    """The code points ``keep`` takes, as the body of a regex character class of ranges."""
    parts, start = [], None
    for code in range(len(_CATEGORIES) + 1):
        inside = code < len(_CATEGORIES) and keep(code)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            parts.append(f"\\u{start:04x}" if start == code - 1 else f"\\u{start:04x}-\\u{code - 1:04x}")
            start = None
    return "".join(parts)


_PRINTABLE = _class(_printable)
_PRINTABLE_NO_COLON = _class(lambda c: _printable(c) and c != ord(":"))
_NO_SPACE = _class(lambda c: _printable(c) and _CATEGORIES[c] != "Zs")
_NO_SPACE_NO_COLON = _class(lambda c: _printable(c) and _CATEGORIES[c] != "Zs" and c != ord(":"))
# Nova's '^(?![edge])[printable]*(?<![edge])$' (edge: not printable, or a space) without its lookarounds, which a
# generator from the document would have to filter: a first and last character that is printable and no space.
NAME_PATTERN = f"^([{_NO_SPACE}]([{_PRINTABLE}]*[{_NO_SPACE}])?)?$"
AZ_NAME_PATTERN = f"^([{_NO_SPACE_NO_COLON}]([{_PRINTABLE_NO_COLON}]*[{_NO_SPACE_NO_COLON}])?)?$"
NAME_WITH_SPACES_PATTERN = (f"^[{_PRINTABLE}]*[{_NO_SPACE}]+[{_PRINTABLE}]*$|"
                            f"^[{_PRINTABLE}]*[{_NO_SPACE}][{_NO_SPACE}{_PRINTABLE}]+[{_NO_SPACE}][{_PRINTABLE}]*$")
AZ_NAME_WITH_SPACES_PATTERN = (
    f"^[{_PRINTABLE_NO_COLON}]*[{_NO_SPACE_NO_COLON}]+[{_PRINTABLE_NO_COLON}]*$|"
    f"^[{_PRINTABLE_NO_COLON}]*[{_NO_SPACE_NO_COLON}][{_NO_SPACE_NO_COLON}{_PRINTABLE_NO_COLON}]+"
    f"[{_NO_SPACE_NO_COLON}][{_PRINTABLE_NO_COLON}]*$")

# pattern -> (compiled, Nova's InvalidName reason)
_REASONS = {
    NAME_PATTERN: "printable characters. Can not start or end with whitespace.",
    AZ_NAME_PATTERN: "printable characters except :.Can not start or end with whitespace.",
    NAME_WITH_SPACES_PATTERN: "printable characters with at least one non space character",
    AZ_NAME_WITH_SPACES_PATTERN: "printable characters except :, with at least one non space character",
}
_COMPILED = {pattern: re.compile(pattern) for pattern in _REASONS}
INVALID_NAME = "An invalid 'name' value was provided."


def invalid_name(pattern: str, value: str) -> str | None:
    """Nova's InvalidName message when ``value`` does not match ``pattern`` (re.search, as Nova's format check),
    else None."""
    if _COMPILED[pattern].search(value):
        return None
    return f"{INVALID_NAME} The name must be: {_REASONS[pattern]}"
