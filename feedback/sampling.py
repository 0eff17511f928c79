"""Sampling parameters of a generation run: validated on the web side, read by every backend.

Plain data, no torch: the admin and the REST API validate with it, the workers generate with it, and a
run stores `SamplingParameters.as_dict()` so that every response records what it was sampled with.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_NEW_TOKENS_LIMIT = 32_768
MAX_STOP_STRINGS = 8
MAX_STOP_STRING_LENGTH = 64


class SamplingParametersError(ValueError):
    """Bad sampling parameters; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))


@dataclass(frozen=True)
class SamplingParameters:
    """How each sample is drawn.

    `temperature` 0 means greedy decoding (every sample of a prompt is then the same text, so pairing
    finds nothing to compare). `top_k` 0 and `top_p` 1 switch those filters off; `repetition_penalty` 1
    switches that off. Stop strings end a response and are not part of its text.
    """

    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 256
    repetition_penalty: float = 1.0
    stop_strings: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        errors: dict[str, str] = {}
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 5:
            errors["temperature"] = "Must be a number from 0 to 5."
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            errors["top_p"] = "Must be a number above 0 and at most 1."
        if not _is_integer(self.top_k) or self.top_k < 0:
            errors["top_k"] = "Must be a whole number, 0 or more (0 switches top-k off)."
        if not _is_integer(self.max_new_tokens) or not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            errors["max_new_tokens"] = f"Must be a whole number from 1 to {MAX_NEW_TOKENS_LIMIT}."
        if not _is_number(self.repetition_penalty) or not 0 < self.repetition_penalty <= 10:
            errors["repetition_penalty"] = "Must be a number above 0 and at most 10 (1 switches it off)."
        stop_error = _stop_strings_error(self.stop_strings)
        if stop_error:
            errors["stop_strings"] = stop_error
        if errors:
            raise SamplingParametersError(errors)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop_strings"] = list(self.stop_strings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingParameters:
        """Build from JSON-shaped data; unknown keys are an error, missing keys take the defaults."""
        if not isinstance(data, dict):
            raise SamplingParametersError({"sampling_parameters": "Must be an object."})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise SamplingParametersError(dict.fromkeys(unknown, "Unknown sampling parameter."))
        values = dict(data)
        if "stop_strings" in values:
            stop_strings = values["stop_strings"]
            if not isinstance(stop_strings, list | tuple):
                raise SamplingParametersError({"stop_strings": "Must be a list of strings."})
            values["stop_strings"] = tuple(stop_strings)
        return cls(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _stop_strings_error(stop_strings: Any) -> str:
    if not isinstance(stop_strings, tuple):
        return "Must be a list of strings."
    if len(stop_strings) > MAX_STOP_STRINGS:
        return f"At most {MAX_STOP_STRINGS} stop strings."
    for value in stop_strings:
        if not isinstance(value, str) or not value:
            return "Each stop string must be a non-empty string."
        if len(value) > MAX_STOP_STRING_LENGTH:
            return f"Each stop string may hold at most {MAX_STOP_STRING_LENGTH} characters."
        if "\x00" in value:
            # PostgreSQL's jsonb cannot store U+0000: refuse it here rather than fail at the INSERT.
            return "A stop string cannot contain the NUL character."
    if len(set(stop_strings)) != len(stop_strings):
        return "Stop strings must be distinct."
    return ""
