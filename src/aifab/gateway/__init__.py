"""The front door: routes and pools of upstreams, balancing, health and failover, API keys and scopes,
token quotas, guardrails, the audit log and per-key metrics. It wraps the serving app (a pure ASGI layer)
and knows nothing of what serves behind it."""
