"""From risk to action: thresholds, minimum evidence, confirmation and hysteresis."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from detectors.client_state import ClientState
from schemas import Action


DEFAULT_TARGET_FPR = 0.001


def thresholds_for(target_fpr: float) -> tuple[float, float, float]:
    """Throttle, challenge and deny thresholds for a share of benign clients ever throttled.

    Risk has two routes, each meant to let a benign client ever reach ``1 - a`` with
    probability at most ``a``: the snapshot (beyond the sustained peak of a share of benign
    clients, with an extrapolated tail) and the accumulated evidence (Ville's inequality, for
    p-values independent beyond the test's weight). Each gets half of the target. Both are
    nominal, and the detection benchmark measures them on held-out benign clients.
    Challenges are ten times rarer, denies a hundred times.

    >>> [round(t, 6) for t in thresholds_for(0.001)]
    [0.9995, 0.99995, 0.999995]
    """
    if not 0.0 < target_fpr < 1.0:
        raise ValueError(f"the target false-positive rate must lie in (0, 1), got {target_fpr}")
    return 1.0 - target_fpr / 2, 1.0 - target_fpr / 20, 1.0 - target_fpr / 200


_THROTTLE, _CHALLENGE, _DENY = thresholds_for(DEFAULT_TARGET_FPR)


@dataclass(frozen=True)
class PolicyConfig:
    """Documented defaults; every field can be set from the command line or a config file.

    - ``throttle``/``challenge``/``deny``: the risk at which each action starts; by default
      those of :func:`thresholds_for` at a target of 0.1% of benign clients ever throttled
      (:meth:`for_target_fpr` sets another). A benign client is meant to reach a risk of
      ``1 - a`` with probability at most ``a`` on each of the two routes to risk.
    - ``min_events``: no action but allow before a client has sent this many events.
      Training calibrates with this default and ``confirm_events``; other values still
      work, with a false-positive rate that no longer matches the thresholds exactly.
    - ``min_events_deny``: no deny before this many events.
    - ``confirm_events``: a stronger action must be indicated by this many successive
      events before it is taken, so one noisy event does not act.
    - ``confirm_jitter``: up to this many more confirming events, drawn per client and action
      by a hash keyed with ``jitter_key`` (the deployment's secret), so a client cannot learn
      which of its queries tripped an action (a stateful detector that answers at a fixed
      point is an oracle: OARS, CCS '23). The same client and action always draw the same delay.
    - ``hysteresis``: to step down, risk must fall this far below the current action's
      threshold, so a client near a threshold does not flap.
    - ``allowlist``: client ids that are always allowed.
    """

    throttle: float = _THROTTLE
    challenge: float = _CHALLENGE
    deny: float = _DENY
    min_events: int = 10
    min_events_deny: int = 30
    confirm_events: int = 3
    confirm_jitter: int = 0
    jitter_key: str = field(default="", repr=False)
    hysteresis: float = 0.02
    allowlist: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not 0.0 < self.throttle <= self.challenge <= self.deny <= 1.0:
            raise ValueError("thresholds must satisfy 0 < throttle <= challenge <= deny <= 1")
        if self.min_events < 1 or self.min_events_deny < self.min_events or self.confirm_events < 1 or self.confirm_jitter < 0:
            raise ValueError("need 1 <= min_events <= min_events_deny, confirm_events >= 1 and confirm_jitter >= 0")

    def confirmations(self, client_id: str, action: Action) -> int:
        """Successive events that must indicate ``action`` before this client gets it.

        >>> config = PolicyConfig(confirm_events=3, confirm_jitter=5, jitter_key="secret")
        >>> draws = {config.confirmations(f"key_{i}", Action.THROTTLE) for i in range(200)}
        >>> min(draws), max(draws)
        (3, 8)
        """
        if not self.confirm_jitter:
            return self.confirm_events
        digest = hashlib.blake2b(f"{client_id}\0{action.value}".encode(), key=self.jitter_key.encode()[:64], digest_size=8).digest()
        return self.confirm_events + int.from_bytes(digest, "big") % (self.confirm_jitter + 1)

    @classmethod
    def for_target_fpr(cls, target_fpr: float, **fields) -> PolicyConfig:
        throttle, challenge, deny = thresholds_for(target_fpr)
        return cls(throttle=throttle, challenge=challenge, deny=deny, **fields)

    def with_target_fpr(self, target_fpr: float) -> PolicyConfig:
        throttle, challenge, deny = thresholds_for(target_fpr)
        return replace(self, throttle=throttle, challenge=challenge, deny=deny)

    def threshold(self, action: Action) -> float:
        return {Action.ALLOW: 0.0, Action.THROTTLE: self.throttle, Action.CHALLENGE: self.challenge, Action.DENY: self.deny}[action]


class Policy:
    """Decide a client's action after each event; remembers what it needs in the ClientState.

    >>> policy = Policy(PolicyConfig(min_events=1, min_events_deny=1, confirm_events=2))
    >>> state = ClientState()
    >>> state.events_seen = 50
    >>> [policy.decide("k", state, r).value for r in (0.5, 0.999999, 0.999999, 0.5)]
    ['allow', 'allow', 'deny', 'allow']
    """

    def __init__(self, config: PolicyConfig | None = None) -> None:
        self.config = config or PolicyConfig()

    def target(self, risk: float, events_seen: int) -> Action:
        c = self.config
        if events_seen < c.min_events:
            return Action.ALLOW
        if risk >= c.deny and events_seen >= c.min_events_deny:
            return Action.DENY
        if risk >= c.challenge:
            return Action.CHALLENGE
        if risk >= c.throttle:
            return Action.THROTTLE
        return Action.ALLOW

    def withheld(self, client_id: str, state: ClientState, risk: float, events_seen: int) -> str | None:
        """Why the client's action is not what its risk alone would make it, if it is not.

        >>> policy = Policy(PolicyConfig(min_events=10))
        >>> policy.withheld("k", ClientState(), 0.99999, events_seen=7)
        'risk 0.99999 is past the throttle threshold 0.9995, but no action before 10 events (7 so far)'
        """
        c = self.config
        current = Action(state.action)
        if client_id in c.allowlist:
            return "allowlisted: always allowed" if risk >= c.throttle else None
        if events_seen < c.min_events and risk >= c.throttle:
            return f"risk {risk:.6g} is past the throttle threshold {c.throttle:.6g}, but no action before {c.min_events} events ({events_seen} so far)"
        if risk >= c.deny and events_seen < c.min_events_deny and current.severity < Action.DENY.severity:
            return f"risk {risk:.6g} is past the deny threshold {c.deny:.6g}, but no deny before {c.min_events_deny} events ({events_seen} so far)"
        if state.pending_action:
            return f"{state.pending_action} waits for successive events that confirm it"
        if current.severity > self.target(risk, events_seen).severity:
            return f"{current.value} holds until risk falls below {c.threshold(current) - c.hysteresis:.6g} (hysteresis)"
        return None

    def decide(self, client_id: str, state: ClientState, risk: float, events_seen: int | None = None) -> Action:
        """Update ``state.action`` for this event's risk and return it.

        ``events_seen`` is the client's count at this event (default: the state's).
        """
        if client_id in self.config.allowlist:
            state.action, state.pending_action, state.pending_count = Action.ALLOW.value, None, 0
            return Action.ALLOW
        current = Action(state.action)
        target = self.target(risk, state.events_seen if events_seen is None else events_seen)
        if target.severity > current.severity:
            state.pending_count = state.pending_count + 1 if state.pending_action else 1
            state.pending_action = target.value
            if state.pending_count >= self.config.confirmations(client_id, target):
                state.action, state.pending_action, state.pending_count = target.value, None, 0
        else:
            state.pending_action, state.pending_count = None, 0
            if target.severity < current.severity and risk < self.config.threshold(current) - self.config.hysteresis:
                state.action = target.value
        return Action(state.action)
