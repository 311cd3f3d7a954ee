"""Request and response bodies of the HTTP API, and the one error shape `{"error": "..."}`.

Requests are parsed strictly (no unknown fields, no "1" for 1, no NaN); limits that depend on
the run or the server's settings (context size, the generator's longest response) are checked
by validators that read them from the validation context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from seqgan.chat import (  # one set of limits for chat and the API
    MAX_BEAMS,
    MAX_INPUT_CHARS,
    MAX_TEMPERATURE,
    MAX_TOP_K,
)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for."""

    max_context_turns: int = 32
    max_context_chars: int = 4000  # all turns together
    max_len: int = 40  # the generator's longest response (its positions)
    max_turn_chars: int = MAX_INPUT_CHARS  # one turn


class RespondRequest(BaseModel):
    """POST /v1/respond. Options left out take the run's `sample` section."""

    model_config = ConfigDict(extra="forbid", strict=True)

    context: list[str] = Field(min_length=1, description="the conversation so far, oldest turn first")
    generator: Literal["pretrained", "adversarial"] = "pretrained"
    strategy: Literal["sample", "greedy", "beam"] | None = Field(
        default=None, description="default: beam when num_beams > 1 is given, else the run's")
    temperature: float | None = Field(default=None, ge=0.0, le=MAX_TEMPERATURE, allow_inf_nan=False,
                                      description="0 = greedy")
    top_p: float | None = Field(default=None, gt=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K, description="0 = off")
    num_beams: int | None = Field(default=None, ge=1, le=MAX_BEAMS)
    max_len: int | None = Field(default=None, ge=1, description="longest response in tokens")

    @field_validator("context")
    @classmethod
    def _context_fits(cls, turns: list[str], info: ValidationInfo) -> list[str]:
        limits: Limits = (info.context or {}).get("limits", Limits())
        if len(turns) > limits.max_context_turns:
            raise ValueError(f"at most {limits.max_context_turns} turns, got {len(turns)}")
        chars = sum(len(t) for t in turns)
        if chars > limits.max_context_chars:
            raise ValueError(f"at most {limits.max_context_chars} characters in all, got {chars}")
        longest = max(len(t) for t in turns)
        if longest > limits.max_turn_chars:
            raise ValueError(f"at most {limits.max_turn_chars} characters a turn, got {longest}")
        if not any(t.strip() for t in turns):
            raise ValueError("every turn is empty; say something")
        return turns

    @field_validator("max_len")
    @classmethod
    def _max_len_fits(cls, value: int | None, info: ValidationInfo) -> int | None:
        limits: Limits = (info.context or {}).get("limits", Limits())
        if value is not None and value > limits.max_len:
            raise ValueError(f"must be at most {limits.max_len} (the generator's longest response), got {value}")
        return value


class RespondResponse(BaseModel):
    """The reply to POST /v1/respond."""

    response: str
    tokens: int
    latency_ms: float  # arrival to reply, queueing included
    generator: str
    batch_size: int  # requests answered by the same model call


def describe(error: ValidationError) -> tuple[int, str]:
    """A status code and one readable line for a failed request parse."""
    parts, status = [], 422
    for e in error.errors(include_url=False, include_input=False):
        loc = _loc(e["loc"])
        kind = e["type"]
        if kind == "json_invalid":
            status = 400
            parts.append(f"malformed JSON: {e.get('ctx', {}).get('error', e['msg'])}")
        elif kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
            status = 400
            parts.append("the request body must be a JSON object")
        elif kind == "extra_forbidden":
            parts.append(f"unknown field '{loc}'")
        elif kind == "missing":
            parts.append(f"missing field '{loc}'")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            parts.append(f"{loc}: {msg}" if loc else msg)
    return status, "; ".join(parts[:5]) + (f"; and {len(parts) - 5} more" if len(parts) > 5 else "")


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
