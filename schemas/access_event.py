"""The canonical gateway access record: one JSON object per line."""

from __future__ import annotations

import math

import msgspec

from schemas.timefmt import to_epoch

SKETCH_DIM = 1_024  # the length of a sketched row (ingest.oversize): every row of a space has its space's length
MAX_ROW_LENGTH = 100_000_000  # the longest row a sketch may stand for (the store keeps the length as UInt32)


class Params(msgspec.Struct, omit_defaults=True):
    """Sampling parameters of the request, as the client sent them."""

    temperature: float | None = None
    max_tokens: int | None = None
    # OpenAI's completions API sends an int (how many), its chat API a bool.
    logprobs: bool | int | None = None
    top_logprobs: int | None = None
    n: int | None = None
    # How many tokens the request biases: OpenAI's ``logit_bias`` map (token id -> bias), counted.
    # Recovering a model's logits through its API (Carlini et al. 2024, Finlayson et al. 2024)
    # resends prompts with a different map each time; a producer may send the map itself.
    logit_bias: int | dict[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.logit_bias, dict):
            self.logit_bias = len(self.logit_bias) or None
        elif self.logit_bias is not None and self.logit_bias < 0:
            raise ValueError("logit_bias is the number of biased tokens (or the map itself), not negative")

    def wants_logprobs(self) -> bool:
        return bool(self.logprobs) or bool(self.top_logprobs)


class AccessEvent(msgspec.Struct, omit_defaults=True):
    """One API request as the gateway logged it.

    ``ts`` is accepted as an RFC 3339 string or epoch seconds and is always epoch
    seconds (float) once the record exists. Unknown fields are ignored, so gateways may
    log more than this.
    """

    ts: float | str
    client_id: str
    ip: str | None = None
    method: str | None = None
    path: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    model: str | None = None
    prompt: str | None = None
    features: list[float] | None = None
    params: Params | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    user_agent: str | None = None
    request_id: str | None = None
    asn: int | None = None
    key_created: str | None = None
    # Earlier answers the request carries: the assistant messages of a chat request's history.
    # 0 is a fresh question, 2 a question after two exchanges; None where the log does not say.
    turns: int | None = None
    # The length of the request's row when ``features`` holds its sketch (rows too long to
    # keep whole, see ingest.oversize); None when ``features`` is the row itself.
    features_dim: int | None = None
    # The length of the request's prompt when ``prompt`` holds only its opening (prompts too
    # long to keep whole, see ingest.oversize); None when ``prompt`` is the whole prompt.
    prompt_chars: int | None = None

    def __post_init__(self) -> None:
        self.ts = to_epoch(self.ts)
        if not self.client_id.strip():
            raise ValueError("client_id must not be empty")
        if self.features is not None:
            if not self.features:
                raise ValueError("features must not be empty")
            if not all(math.isfinite(x) for x in self.features):
                raise ValueError("features must be finite numbers (no NaN or infinity)")
        if self.turns is not None and self.turns < 0:
            raise ValueError("turns must not be negative")
        if self.features_dim is not None and (
            not self.features or len(self.features) != SKETCH_DIM or not SKETCH_DIM < self.features_dim <= MAX_ROW_LENGTH
        ):
            raise ValueError(f"features_dim is the length (at most {MAX_ROW_LENGTH:,}) of a row whose {SKETCH_DIM}-value sketch is in features")
        if self.prompt_chars is not None and (self.prompt is None or not len(self.prompt) < self.prompt_chars <= MAX_ROW_LENGTH):
            raise ValueError(f"prompt_chars is the length (at most {MAX_ROW_LENGTH:,}) of a prompt whose opening is in prompt")

    @property
    def prompt_length(self) -> int:
        """The prompt's length in characters as the client sent it (0: no prompt)."""
        return self.prompt_chars or len(self.prompt or "")

    @property
    def space(self) -> str | None:
        """Which vector space the request lives in: ``"text"``, ``"numeric:<dim>"`` or None."""
        if self.prompt:
            return "text"
        if self.features:
            return f"numeric:{self.features_dim or len(self.features)}"
        return None
