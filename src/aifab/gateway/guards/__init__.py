"""Guardrails: the detectors (PII and secrets from ``aifab.redaction``, prompt injection here) and the pipeline
that applies the configured action to a request's texts and to a (streamed) answer."""

from aifab.gateway.guards.injection import InjectionGuard
from aifab.gateway.guards.pipeline import Guardrails, InputResult, default_guards
from aifab.gateway.guards.stream import Emit, OutputGuard
from aifab.redaction import PiiGuard, SecretsGuard

__all__ = ["Emit", "Guardrails", "InjectionGuard", "InputResult", "OutputGuard", "PiiGuard", "SecretsGuard",
           "default_guards"]
