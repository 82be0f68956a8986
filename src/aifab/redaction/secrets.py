"""Credentials by their published formats (OpenAI, aifab, AWS, GitHub, GitLab, Slack, Google, Stripe, JWT,
PEM private keys), passwords inside URLs, generic ``api_key=…`` / ``Authorization: Bearer …`` values
when the value looks random (letters and digits, ≥ 3 bits of entropy per character), and unlabelled
key-like tokens (``high_entropy``: 20-128 base64 characters as random as a generated key, see
``high_entropy``), so that a bare AWS secret access key is caught.

Where a prefix says what the value is (``api_key=``, ``user:…@``), only the value is replaced. An
unterminated private-key block is redacted to the end of the text (at most 16 KB). Not covered: secrets in
no known format and without a telling name next to them that are hexadecimal (a bare 40-character hex
string is a git SHA far more often than a key), shorter than 20 characters, or longer than 128."""

from __future__ import annotations

import base64
import binascii
import re
from typing import Literal

from aifab.redaction.rules import RegexGuard, Rule, entropy

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


# Entropy (bits per character) that 99% of random base64/alphanumeric strings of that length reach
# (simulated, 2,000 strings per length); a threshold that is fixed whatever the length (detect-secrets:
# 4.5) misses most keys shorter than ~40 characters.
_KEY_ENTROPY = ((20, 3.6), (24, 3.85), (32, 4.2), (40, 4.45), (64, 4.9), (88, 5.1), (128, 5.35))
_B64 = r"[A-Za-z0-9+/_\-]"
_HEX_OR_UUID = frozenset("0123456789abcdefABCDEF-")


def _key_entropy(n: int) -> float:
    lo_n, lo_e = _KEY_ENTROPY[0]
    for hi_n, hi_e in _KEY_ENTROPY[1:]:
        if n <= hi_n:
            return lo_e + (hi_e - lo_e) * (max(n, lo_n) - lo_n) / (hi_n - lo_n)
        lo_n, lo_e = hi_n, hi_e
    return lo_e


def _kind(c: str) -> int:
    return 0 if c.islower() else 1 if c.isupper() else 2 if c.isdigit() else 3


def key_like(value: str) -> bool:
    """A generated key rather than text, code or a hash: upper- and lower-case letters and digits, not
    hexadecimal (git SHAs, checksums, UUIDs), as random as 99% of random keys of its length, switching
    between letter case, digit and symbol as often as random text does (the base64 alphabet written out
    almost never does), not made of words, and not base64 of readable text."""
    body = value.rstrip("=")
    if not _HEX_OR_UUID.isdisjoint(body) and set(body) <= _HEX_OR_UUID:
        return False
    if not (any(c.islower() for c in body) and any(c.isupper() for c in body) and any(c.isdigit() for c in body)):
        return False
    kinds = [_kind(c) for c in body]
    switches = sum(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    if switches < 0.3 * (len(body) - 1) or entropy(body) < _key_entropy(len(body)):
        return False
    return not _wordy(body) and not _encoded_text(value)


_WORD = re.compile(r"[A-Z]?[a-z]+")
_VOWELS = frozenset("aeiouAEIOU")


def _wordy(body: str) -> bool:
    """Made of words: long capitalised/lower-case runs and a vowel share near English (~38%; random
    letters: 19%). Loses ~1.3% of random 20-64 character keys, and keeps C API names such as
    ``PyUnicode_AsUTF8AndSize`` and paths such as ``RPM_Guide/ch-creating-rpms`` out."""
    words = _WORD.findall(body)
    if not words:
        return False
    run = sum(map(len, words)) / len(words)
    letters = [c for c in body if c.isalpha()]
    vowels = sum(c in _VOWELS for c in letters) / len(letters)
    return (vowels >= 0.3 and run >= 3.0) or (vowels >= 0.25 and run >= 3.5)
_HASH_WORDS = re.compile(r"(?i:sha-?\d*|md5|hash|digest|checksum|fingerprint|integrity)\b[^\n]{0,24}$")


def _encoded_text(value: str) -> bool:
    """``value`` is base64 (standard or URL-safe) of UTF-8 text: an encoded message, not a key."""
    body = value.rstrip("=")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if "-" in body or "_" in body else None,
                               validate=True)
        text = raw.decode()
    except (binascii.Error, ValueError):
        return False
    return text.isprintable()


def _unlabelled_key(m: re.Match[str]) -> bool:
    """``key_like``, and not part of a dotted name or host (``docs.python.org/...``, ``x.AbC...``) and not
    right after a hash's name (``sha256 value: …``)."""
    text, start, end = m.string, m.start(), m.end()
    if text[start - 1:start] == "." or (text[end:end + 1] == "." and text[end + 1:end + 2].isalnum()):
        return False
    return key_like(m.group()) and _HASH_WORDS.search(text, max(start - 32, 0), start) is None


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
    # last: a token that a rule above names (an OpenAI key, a JWT) keeps that rule's category
    Rule("high_entropy", re.compile(r"(?<![A-Za-z0-9+/_\-])" + _B64 + r"{20,128}={0,2}(?![A-Za-z0-9+/_=\-])"),
         SECRET, valid=_unlabelled_key),
)


class SecretsGuard(RegexGuard):
    """Kind ``secrets``. Findings' categories are the rule names (openai_key, aws_key, jwt, …)."""

    name = "secrets"
    kind: Literal["pii", "secrets", "injection"] = "secrets"
    rules = SECRET_RULES
