"""The risk lookup API: what gateways ask before serving a client, and what analysts ask about one."""
