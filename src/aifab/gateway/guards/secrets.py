"""Credentials by their published formats (OpenAI, aifab, AWS, GitHub, GitLab, Slack, Google, Stripe, JWT,
PEM private keys), passwords inside URLs, and generic ``api_key=…`` / ``Authorization: Bearer …`` values
when the value looks random (letters and digits, ≥ 3 bits of entropy per character).

Where a prefix says what the value is (``api_key=``, ``user:…@``), only the value is replaced. An
unterminated private-key block is redacted to the end of the text (at most 16 KB). Not covered: secrets in
no known format and without a telling name next to them (a bare 40-character hex string is not flagged)."""

from __future__ import annotations

import re
from typing import Literal

from aifab.gateway.guards.rules import RegexGuard, Rule, entropy

SECRET = "[SECRET]"
_PEM_MAX = 16384
_PEM_END = re.compile(r"-----END [A-Z0-9 ]{0,40}-----")


def _pem_end(text: str, m: re.Match[str]) -> int:
    end = _PEM_END.search(text, m.end(), min(len(text), m.start() + _PEM_MAX))
    return end.end() if end else min(len(text), m.start() + _PEM_MAX)


def random_looking(value: str, min_len: int = 16) -> bool:
    """Letters and digits mixed, long enough, not a word or an identifier."""
    return (len(value) >= min_len and any(c.isdigit() for c in value) and any(c.isalpha() for c in value)
            and entropy(value) >= 3.0)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _token(prefix: str, body: str) -> re.Pattern[str]:
    """``prefix`` + ``body`` as a whole token; the left boundary is checked after the prefix so that ``re``
    finds candidates with a fast literal search."""
    return re.compile(prefix + r"(?<![A-Za-z0-9_\-]" + prefix + ")" + body + r"(?![A-Za-z0-9_\-])")


_NAMES = (r"api[_\-]?key|apikey|api[_\-]?secret|secret[_\-]?key|access[_\-]?key(?:[_\-]?id)?|access[_\-]?token"
          r"|auth[_\-]?token|refresh[_\-]?token|client[_\-]?secret|private[_\-]?key|secret|token|password|passwd|pwd")
_VALUE = r"(?P<v>[A-Za-z0-9_\-+/=.~]{16,4096})"


def _random_value(m: re.Match[str]) -> bool:
    return (m.start() == 0 or not m.string[m.start() - 1].isalnum()) and random_looking(m["v"])


SECRET_RULES: tuple[Rule, ...] = (
    Rule("private_key", re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"), SECRET,
         extend=_pem_end),
    Rule("openai_key", _token("sk-", r"(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_\-]{20,256}"), SECRET,
         valid=lambda m: random_looking(m.group())),
    Rule("aifab_key", _token("afk-", r"[A-Za-z0-9_\-]{16,256}"), SECRET, valid=lambda m: random_looking(m.group())),
    Rule("aws_key", _token("A", r"(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16}"), SECRET),
    Rule("github_token", _token("gh", r"[pousr]_[A-Za-z0-9]{36,255}"), SECRET),
    Rule("github_token", _token("github_pat_", r"[A-Za-z0-9_]{22,255}"), SECRET),
    Rule("gitlab_token", _token("glpat-", r"[A-Za-z0-9_\-]{20,255}"), SECRET),
    Rule("slack_token", _token("xox", r"[abposre]-[A-Za-z0-9\-]{10,250}"), SECRET),
    Rule("slack_webhook", re.compile(r"hooks\.slack\.com/services/[A-Za-z0-9/_\-]{20,200}"), SECRET),
    Rule("google_key", _token("AIza", r"[0-9A-Za-z_\-]{35}"), SECRET),
    Rule("stripe_key", _token("sk_", r"(?:live|test)_[0-9A-Za-z]{16,247}"), SECRET),
    Rule("stripe_key", _token("rk_", r"(?:live|test)_[0-9A-Za-z]{16,247}"), SECRET),
    Rule("jwt", _token("eyJ", r"[A-Za-z0-9_\-]{6,4096}\.eyJ[A-Za-z0-9_\-]{6,8192}\.[A-Za-z0-9_\-]{0,4096}"), SECRET),
    Rule("url_password", re.compile(r"://(?<=[A-Za-z0-9]://)[^\s/:@\[\]]{1,64}:"
                                    r"(?P<v>[^\s/@<>{}$*\[\]][^\s/@]{0,127})@"), SECRET, group="v"),
    Rule("assigned_secret", re.compile(r"(?:" + _NAMES + r")[\"']?\s{0,4}(?:=|:|=>|:=)\s{0,4}[\"']?" + _VALUE),
         SECRET, ("key", "secret", "token", "pass", "pwd"), valid=_random_value, group="v", where="lower"),
    Rule("bearer_token", re.compile(r"(?:bearer|basic|token)\s{1,4}(?P<v>[a-z0-9_\-.~+/]{16,4096}=*)"), SECRET,
         ("bearer", "basic", "token"), valid=_random_value, group="v", where="lower"),
)


class SecretsGuard(RegexGuard):
    """Kind ``secrets``. Findings' categories are the rule names (openai_key, aws_key, jwt, …)."""

    name = "secrets"
    kind: Literal["pii", "secrets", "injection"] = "secrets"
    rules = SECRET_RULES
