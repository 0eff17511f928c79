"""What every backend takes and gives: plain dataclasses, no torch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from feedback.models import PolicyCheckpoint
    from feedback.sampling import SamplingParameters

FinishReason = Literal["eos", "length", "stop"]


@dataclass(frozen=True)
class CheckpointSpec:
    """Everything a worker needs to load a checkpoint, detached from the ORM row.

    Two specs that compare equal load the same model, so a worker keeps its loaded model while the spec
    it is asked for stays equal, and reloads when an admin edits the checkpoint.
    """

    checkpoint_id: int
    name: str
    kind: Literal["base", "instruct"]
    source_type: Literal["local", "hub"]
    source: str
    revision: str = ""
    adapter_source: str = ""
    adapter_revision: str = ""
    dtype: str = "auto"
    backend: Literal["transformers", "openai"] = "transformers"
    api_base_url: str = ""
    served_model_name: str = ""
    api_key_env: str = ""

    @classmethod
    def from_checkpoint(cls, checkpoint: PolicyCheckpoint) -> CheckpointSpec:
        return cls(
            checkpoint_id=checkpoint.pk,
            name=checkpoint.name,
            kind=checkpoint.kind,  # type: ignore[arg-type]
            source_type=checkpoint.source_type,  # type: ignore[arg-type]
            source=checkpoint.source,
            revision=checkpoint.revision,
            adapter_source=checkpoint.adapter_source,
            adapter_revision=checkpoint.adapter_revision,
            dtype=checkpoint.dtype,
            backend=checkpoint.backend,  # type: ignore[arg-type]
            api_base_url=checkpoint.api_base_url,
            served_model_name=checkpoint.served_model_name,
            api_key_env=checkpoint.api_key_env,
        )


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to draw. `key` is the caller's (prompt id, sample index); `seed` fixes the sample."""

    key: Any
    conversation: list[dict[str, str]]
    seed: int


@dataclass(frozen=True)
class GeneratedText:
    """One response. `token_count` counts generated tokens, without the end-of-sequence token and
    without a matched stop string; `latency_seconds` is the wall time of the batch that produced it."""

    key: Any
    text: str
    token_count: int
    finish_reason: FinishReason
    latency_seconds: float


class GenerationBackend(Protocol):
    spec: CheckpointSpec

    def generate(
        self,
        requests: Sequence[GenerationRequest],
        sampling: SamplingParameters,
        *,
        completion_template: str,
    ) -> Iterator[list[GeneratedText]]:
        """Yield results batch by batch, so the caller can store each batch as it finishes."""
        ...

    def close(self) -> None:
        """Free what the backend holds (GPU memory, connections)."""
        ...


class CheckpointError(Exception):
    """A checkpoint cannot be used as configured; the message says why and what to do. Permanent: a
    retry would fail the same way."""
