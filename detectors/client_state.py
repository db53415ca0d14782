"""Everything clonewatch remembers about one client, in a form that can be stored and restored."""

from __future__ import annotations

import msgspec
import numpy as np

from detectors.activity_window import ActivityWindow
from detectors.geometry_window import GeometryWindow
from detectors.prompt_window import PromptWindow
from schemas import AccessEvent


class ClientState:
    """One client's windows (timing and shape, prompt words, query vectors), event count, current action
    and accumulated evidence (the log e-values of :class:`detectors.evidence.SequentialTest`, empty until scored).

    ``to_bytes``/``from_bytes`` make it storable in a Faust table or any key-value store.

    >>> state = ClientState(window=10)
    >>> state.learn_one(AccessEvent(ts=1795428000, client_id="k", prompt="hi"), "text", np.ones(4, np.float32), 0)
    >>> ClientState.from_bytes(state.to_bytes()).events_seen
    1
    """

    def __init__(self, window: int = 200) -> None:
        self.window = window
        self.events_seen = 0
        self.action = "allow"
        self.pending_action: str | None = None
        self.pending_count = 0
        self.last_ts = 0.0
        self.evidence: list[float] = []
        self.screened = False  # its snapshot has put it among the top tenth of benign clients (see detectors.detector)
        self.screen_streak = 0
        self.campaign_id: str | None = None  # the campaign the campaign stage last placed it in
        self.campaign_risk = 0.0  # that campaign's risk when the stage last spoke
        self.campaign_note = ""  # and its name and ties as it said them
        self.activity = ActivityWindow(window)
        self.prompts = PromptWindow(window)
        self.geometry: dict[str, GeometryWindow] = {}

    def learn_one(
        self,
        event: AccessEvent,
        space: str | None = None,
        vector: np.ndarray | None = None,
        region: int = 0,
        novelty: float = 0.0,
    ) -> None:
        self.events_seen += 1
        self.last_ts = max(self.last_ts, event.ts)
        self.activity.learn_one(event)
        if event.prompt:
            self.prompts.learn_one(event.prompt)
        if space is not None and vector is not None:
            if space not in self.geometry:
                self.geometry[space] = GeometryWindow(dim=len(vector), size=self.window)
            self.geometry[space].learn_one(vector, region, novelty)

    def main_space(self) -> str | None:
        """The space most of this client's recent queries live in."""
        if not self.geometry:
            return None
        return max(self.geometry, key=lambda s: self.geometry[s].count)

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode({
            "window": self.window, "events_seen": self.events_seen, "action": self.action,
            "pending_action": self.pending_action, "pending_count": self.pending_count, "last_ts": self.last_ts,
            "evidence": list(self.evidence), "screened": self.screened, "screen_streak": self.screen_streak,
            "campaign_id": self.campaign_id, "campaign_risk": self.campaign_risk, "campaign_note": self.campaign_note,
            "activity": self.activity.to_state(), "prompts": self.prompts.to_state(),
            "geometry": {space: w.to_state() for space, w in self.geometry.items()},
        })  # fmt: skip

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientState:
        raw = msgspec.msgpack.decode(data)
        state = cls(window=raw["window"])
        state.events_seen, state.action, state.last_ts = raw["events_seen"], raw["action"], raw["last_ts"]
        state.pending_action, state.pending_count = raw["pending_action"], raw["pending_count"]
        state.evidence = list(raw.get("evidence", []))
        state.screened = bool(raw.get("screened", False))
        state.screen_streak = int(raw.get("screen_streak", 0))
        state.campaign_id, state.campaign_risk = raw.get("campaign_id"), float(raw.get("campaign_risk", 0.0))
        state.campaign_note = raw.get("campaign_note", "")
        state.activity = ActivityWindow.from_state(raw["activity"])
        state.prompts = PromptWindow.from_state(raw["prompts"])
        state.geometry = {space: GeometryWindow.from_state(w) for space, w in raw["geometry"].items()}
        return state
