"""Detector quality: unlabelled keys (the secrets guard's ``high_entropy`` rule) and prompt-injection phrasings
after normalisation. Corpus-wide figures are measured in benchmarks/secrets_fp.py and benchmarks/injection.py."""

from __future__ import annotations

import pytest

from aifab.config import GuardrailSettings
from aifab.gateway.guards import Guardrails, SecretsGuard

AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret access key

UNLABELLED_KEYS = [
    f"here you go: {AWS_SECRET}",
    f"{AWS_SECRET}",
    "aws configure set aws_secret_access_key 9drTJvcXLB89EXAMPLEtoZ1RdTfMbUq/Ka3rqUXh and retry",
    "the token is Zq3vT8mK1pXw9RbLn4YcHd7Fs2Ug6Ae0 (expires tomorrow)",
    "session: 4mA9-qT_zR2xK7bN1vC8wP5hL3dF6gJ0sY",  # URL-safe base64
    "SharedAccessKey=Xb7kP2mQ9vL4tR8wZ1nC5yH3jF6dA0sG+eU/iO2kM4w= in the connection string",
    "Drmhze6EPcv0fN_81Bj-nA is what secrets.token_urlsafe(16) printed",
]

NOT_KEYS = [
    "commit 5d2f8b1c9e4a7f3b6d0c8e1a2f4b7c9d0e3a6b8c fixed it",  # git SHA (hex)
    "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "id 123e4567-e89b-12d3-a456-426614174000 and 550E8400-E29B-41D4-A716-446655440000",
    "see Lib/test/test_asyncio/test_base_events.py and /usr/local/include/python3.11/Python.h",
    "https://docs.python.org/3/library/asyncio-task.html#asyncio.TaskGroup?highlight=create_task2",
    "PyUnicode_AsUTF8AndSize, PyModule_FromDefAndSpec2 and PyDict_MergeFromSeq2 are C API functions",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ is the base64 alphabet",
    "b64encode gives ZGF0YSB0byBiZSBlbmNvZGVk and the header =?UTF-8?B?cHJvYmzDqG1lIGRlIG1hdHJpY2U=?=",
    "<FileHash mode: sha256 value: bYkw5oMccfazVCoYQwKkkemoVyMAFoR34mmKBx8R1NI>",
    "www.w3.org/TR/REC-DOM-Level-1/ and example.AbC9dEf2GhI5jKl8MnO1pQr",
    "InvalidBase64PaddingDefect is raised; use aifab-gateway-v2-release-2024 as the tag",
    "The quick brown fox jumps over the lazy dog 1234567890 times, said Mr. McDonald III.",
]


@pytest.mark.parametrize("text", UNLABELLED_KEYS)
def test_unlabelled_key_is_found(text: str) -> None:
    assert "high_entropy" in {f.category for f in SecretsGuard().scan(text)}


@pytest.mark.parametrize("text", NOT_KEYS)
def test_hashes_ids_paths_and_words_are_not_keys(text: str) -> None:
    assert SecretsGuard().scan(text) == []


def test_unlabelled_key_never_reaches_the_client_or_the_audit_log() -> None:
    guards = Guardrails(GuardrailSettings())
    answer = f"Sure. Your secret access key is {AWS_SECRET}. Keep it safe."
    assert guards.redact(answer) == "Sure. Your secret access key is [SECRET]. Keep it safe."
    out = guards.check_output(answer)
    assert AWS_SECRET not in out.text and "[SECRET]" in out.text
    streamed = guards.output_stream()
    parts = [streamed.feed(answer[i:i + 3]).text for i in range(0, len(answer), 3)]
    parts.append(streamed.finish().text)
    assert "".join(parts) == out.text


def test_a_named_key_keeps_its_own_category() -> None:
    found = SecretsGuard().scan("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789")
    assert [f.category for f in found] == ["github_token"]
