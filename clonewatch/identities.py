"""Who a log names its clients by: keys, or addresses, and whether those are internal ones.

A log whose lines name no key and whose every client address is internal (a pod's, a
proxy's) most likely shows the address of a proxy or an ingress in front of the gateway
(Knative's default request log does): its "clients" are a few hops, not the customers.

>>> identities = Identities()
>>> identities.learn([AccessEvent(ts=1795428000, client_id="ip_a", ip="10.244.0.17"), AccessEvent(ts=1795428001, client_id="ip_b", ip="10.244.1.9")])
>>> identities.behind_a_proxy, identities.note()[0]
(True, 'no line names a key and all 2 client addresses are private: most likely')
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from schemas import AccessEvent

# RFC 1918, carrier-grade NAT (some pod networks), loopback, link-local, IPv6 unique local
_INTERNAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "fc00::/7", "fe80::/10", "::1/128",
))  # fmt: skip


def is_internal_address(ip: str | None) -> bool:
    """Whether ``ip`` is an address of an internal network (a pod's, a proxy's).

    >>> is_internal_address("10.244.0.17"), is_internal_address("198.51.100.7"), is_internal_address(None)
    (True, False, False)
    """
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return False
    return any(address in network for network in _INTERNAL_NETWORKS if network.version == address.version)


@dataclass
class Identities:
    keyed_events: int = 0  # events whose client is a key (or a consumer, a user), not an address
    address_clients: dict[str, bool] = field(default_factory=dict)  # clients known by their address -> whether it is internal

    def learn(self, events: Iterable[AccessEvent]) -> None:
        for event in events:
            if not event.client_id.startswith("ip_"):
                self.keyed_events += 1
            elif event.client_id not in self.address_clients:
                self.address_clients[event.client_id] = is_internal_address(event.ip)

    @property
    def behind_a_proxy(self) -> bool:
        """No event names a key and every client is an internal address."""
        return not self.keyed_events and bool(self.address_clients) and all(self.address_clients.values())

    def note(self) -> list[str]:
        """What to tell the user, in lines, when :attr:`behind_a_proxy` (else nothing)."""
        if not self.behind_a_proxy:
            return []
        n = len(self.address_clients)
        which = "the one client address is" if n == 1 else f"all {n:,} client addresses are"
        return [
            f"no line names a key and {which} private: most likely",
            "the addresses of a proxy or ingress in front of the gateway, not of your clients; log the",
            "forwarded address (X-Forwarded-For) or the API key (docs/gateways.md)",
        ]
