"""Guardrails: detectors behind the ``Guard`` protocol (PII, secrets, prompt injection) and the pipeline
that applies the configured action to a request's texts and to a (streamed) answer."""

from aifab.gateway.guards.injection import InjectionGuard
from aifab.gateway.guards.pii import PiiGuard
from aifab.gateway.guards.pipeline import Guardrails, InputResult, default_guards
from aifab.gateway.guards.secrets import SecretsGuard
from aifab.gateway.guards.stream import Emit, OutputGuard

__all__ = ["Emit", "Guardrails", "InjectionGuard", "InputResult", "OutputGuard", "PiiGuard", "SecretsGuard",
           "default_guards"]
