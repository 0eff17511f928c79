"""Form fields for a project's list settings, edited as lines of text instead of raw JSON: strength labels
(one per line), stop strings (one per line, with `\\n`, `\\t` and `\\\\` escapes) and the rating rubric (one
axis per line: `key | label | min-max | description`). Each names the line at fault, as the prompt import
does, and the model's own validators then run on the list it makes."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}
_SCALE = re.compile(r"^\s*(-?\d+)\s*[-–]\s*(-?\d+)\s*$")


class LinesField(forms.Field):
    """A list of strings, one per line (blank lines ignored, each line trimmed)."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return "\n".join(self.line_of(item) for item in value)
        return value

    def line_of(self, item: Any) -> str:
        return str(item)

    def to_python(self, value: Any) -> list[Any]:
        if isinstance(value, list):
            return value
        return [self.item_of(number, line) for number, line in self.lines(str(value or ""))]

    def lines(self, text: str) -> list[tuple[int, str]]:
        """(line number, text) of each line that holds an item: here, each one that is not blank."""
        return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]

    def item_of(self, number: int, line: str) -> Any:
        return line.strip()


class EscapedLinesField(LinesField):
    """Strings one per line, where `\\n` is a newline, `\\t` a tab and `\\\\` a backslash (a stop string
    often starts with a newline). Lines are kept as written otherwise: spaces count."""

    def line_of(self, item: Any) -> str:
        return str(item).replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")

    def lines(self, text: str) -> list[tuple[int, str]]:
        """Every line that is not empty: a line of spaces is a stop string of spaces."""
        return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line]

    def item_of(self, number: int, line: str) -> str:
        result, index = [], 0
        while index < len(line):
            char = line[index]
            if char == "\\":
                escape = line[index + 1 : index + 2]
                if escape not in _ESCAPES:
                    raise ValidationError(
                        f"Line {number}: {line!r} has a backslash that is not \\n, \\t or \\\\ (write \\\\ "
                        "for a backslash)."
                    )
                result.append(_ESCAPES[escape])
                index += 2
                continue
            result.append(char)
            index += 1
        return "".join(result)


class RubricField(LinesField):
    """Rating axes, one per line: `key | label | min-max | description` (the description is optional)."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 100})

    def line_of(self, item: Any) -> str:
        if not isinstance(item, dict):
            return str(item)
        scale = item.get("scale") or {}
        parts = [
            str(item.get("key", "")),
            str(item.get("label", "")),
            f"{scale.get('min')}-{scale.get('max')}",
        ]
        if item.get("description"):
            parts.append(str(item["description"]))
        return " | ".join(parts)

    def item_of(self, number: int, line: str) -> dict[str, Any]:
        parts = [part.strip() for part in line.split("|", 3)]
        if len(parts) < 3:
            raise ValidationError(
                f"Line {number}: write 'key | label | min-max | description', e.g. "
                "'helpfulness | Helpfulness | 1-5 | Is it useful?'."
            )
        scale = _SCALE.match(parts[2])
        if scale is None:
            raise ValidationError(f"Line {number}: the scale {parts[2]!r} is not 'min-max', e.g. 1-5.")
        axis: dict[str, Any] = {
            "key": parts[0],
            "label": parts[1],
            "scale": {"min": int(scale.group(1)), "max": int(scale.group(2))},
        }
        if len(parts) == 4 and parts[3]:
            axis["description"] = parts[3]
        return axis
