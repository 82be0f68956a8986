"""Personal data: e-mail, phone numbers, payment cards (Luhn + known IIN ranges), IBAN (mod 97) and
national IDs with a check where one exists: US SSN (invalid ranges excluded), UK NI number (prefix rules),
Dutch BSN (11-check; only next to the word BSN, since 1 in 11 nine-digit numbers passes), Spanish DNI/NIE
(check letter), German tax ID (ISO 7064 + digit-repetition rule), French NIR (mod 97 key).

Phone numbers are the loosest: international (+CC, 8-15 digits), North American (area and exchange codes
starting 2-9, separators required) and national numbers with a trunk 0 and separators (9-12 digits), or any
digit run right after "phone"/"tel"/"mobile". Plain digit runs, years, prices, versions and dates are not
phones. Not covered: names, postal addresses, dates of birth, passport numbers."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Literal

from aifab.redaction.rules import RegexGuard, Rule, digits

EMAIL, PHONE, CARD, IBAN, NATIONAL_ID = "[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]", "[NATIONAL_ID]"


def luhn(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _known_iin(n: str) -> bool:
    """Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Maestro prefixes with their lengths."""
    size, p2, p4 = len(n), int(n[:2]), int(n[:4])
    if n[0] == "4":
        return size in (13, 16, 19)
    if 51 <= p2 <= 55 or 2221 <= p4 <= 2720:
        return size == 16
    if p2 in (34, 37):
        return size == 15
    if p2 in (36, 38, 39) or 300 <= int(n[:3]) <= 305:
        return 14 <= size <= 19
    if 3528 <= p4 <= 3589 or p2 in (62, 65) or p4 == 6011 or 644 <= int(n[:3]) <= 649:
        return 16 <= size <= 19
    return (p2 == 50 or 56 <= p2 <= 69) and 12 <= size <= 19


def _card(m: re.Match[str]) -> bool:
    raw = m.group()
    n = digits(raw)
    seps = {ch for ch in raw if not ch.isdigit()}
    return len(seps) <= 1 and 13 <= len(n) <= 19 and _known_iin(n) and luhn(n)


_IBAN_LENGTHS = dict(
    (c[:2], int(c[2:])) for c in (
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 CH21 CR22 CY28 CZ24 DE22 DK18 DO28 EE20 EG29 ES24 "
        "FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 IS26 IT27 JO30 KW30 KZ20 LB28 LI21 "
        "LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 "
        "SE24 SI19 SK24 SM27 TN24 TR26 UA29 VG24 XK20"
    ).split()
)


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "")
    if _IBAN_LENGTHS.get(s[:2], len(s)) != len(s) or not 15 <= len(s) <= 34:
        return False
    return int("".join(str(int(ch, 36)) for ch in s[4:] + s[:4])) % 97 == 1


def _ssn(m: re.Match[str]) -> bool:
    area, group, serial = m.group("a", "g", "s")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def bsn_ok(value: str) -> bool:
    n = digits(value)
    if len(n) != 9 or n == "000000000":
        return False
    return (sum(int(d) * w for d, w in zip(n[:8], range(9, 1, -1), strict=True)) - int(n[8])) % 11 == 0


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def _dni(m: re.Match[str]) -> bool:
    number = str("XYZ".index(m["nie"])) + m["n7"] if m["nie"] else m["n8"]
    return _DNI_LETTERS[int(number) % 23] == m["l"]


def de_taxid_ok(value: str) -> bool:
    n = digits(value)
    if len(n) != 11 or n[0] == "0":
        return False
    counts = sorted((n[:10].count(d) for d in set(n[:10])), reverse=True)
    if counts[0] not in (2, 3) or (len(counts) > 1 and counts[1] > 1):
        return False
    if counts[0] == 3 and any(n[i] == n[i + 1] == n[i + 2] for i in range(8)):
        return False  # a digit may appear three times, but not three in a row
    product = 10
    for ch in n[:10]:
        product = ((int(ch) + product) % 10 or 10) * 2 % 11
    return (11 - product) % 10 == int(n[10])


def nir_ok(value: str) -> bool:
    s = value.replace(" ", "").upper().replace("2A", "19").replace("2B", "18")
    return s.isdigit() and len(s) == 15 and 97 - int(s[:13]) % 97 == int(s[13:])


_DOUBLE_SEP = re.compile(r"[ .\-/]{2}")


def _phone(m: re.Match[str]) -> bool:
    raw, n = m.group(), digits(m.group())
    if raw.count("(") > 1 or raw.count("(") != raw.count(")") or _DOUBLE_SEP.search(raw):
        return False
    if raw.startswith("+"):
        return 8 <= len(n) <= 15
    if n.startswith("000"):
        return False
    if raw.startswith("0") and "/" in raw:
        return raw.count("/") == 1 and 9 <= len(n) <= 12  # 030/1234567, not 05/06/2024
    return 9 <= len(n) <= 15


_PHONE_LABEL = re.compile(r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|whatsapp|call\s+me\s+at)\b)[^\w\n+]{0,4}$")
_WORD_END = re.compile(r"[^\W\d_][^\w\n+]{0,4}$")  # a letter, then at most 4 non-word characters
_BSN_LABEL = re.compile(r"(?i:\b(?:bsn|burgerservicenummer|sofinummer)\b)[^\d\n]{0,24}$")


def _after(label: re.Pattern[str], reach: int, needles: tuple[str, ...]) -> Callable[[re.Match[str]], bool]:
    """The match is preceded (within ``reach`` characters) by ``label``, which contains one of ``needles``."""

    def check(m: re.Match[str]) -> bool:
        if _WORD_END.search(m.string, max(m.start() - 5, 0), m.start()) is None:
            return False  # most candidates: a digit group inside a longer number
        lo = max(m.start() - reach, 0)
        before = m.string[lo:m.start()].lower()
        return any(n in before for n in needles) and label.search(m.string, lo, m.start()) is not None

    return check


_BSN_WORDS = ("bsn", "burgerservicenummer", "sofinummer")
_PHONE_WORDS = ("phone", "tel", "mobile", "cell", "fax", "whatsapp", "call")
_after_bsn, _after_phone_label = _after(_BSN_LABEL, 48, _BSN_WORDS), _after(_PHONE_LABEL, 24, _PHONE_WORDS)


_B = r"(?<![\w+\-.@/])"  # not glued to a word, a sign, a decimal or a path on the left
_E = r"(?![\w\-@/]|[.,]\d)"  # nor on the right (a full stop or comma ending the sentence is fine)


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


_URL_USER = re.compile(r"://[^\s/@:]{0,64}:$")


def _email(m: re.Match[str]) -> bool:
    """Not the password of scheme://user:password@host (the secrets guard's)."""
    return m.string[m.start() - 1:m.start()] != ":" or not _URL_USER.search(m.string, max(m.start() - 72, 0),
                                                                              m.start())


PII_RULES: tuple[Rule, ...] = (
    Rule("email", _rx(r"(?<![\w.%+\-])[\w.%+\-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}\.){1,8}[A-Za-z]{2,24}\b"),
         EMAIL, valid=_email, where="at"),
    Rule("iban", _rx(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"),
         IBAN, valid=lambda m: iban_ok(m.group())),
    Rule("card", _rx(_B + r"(?:\d[ \-]?){12,18}\d" + _E), CARD, valid=_card, where="digits", min_digits=12),
    Rule("fr_nir", _rx(_B + r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[ABab]) ?\d{3} ?\d{3} ?\d{2}" + _E), NATIONAL_ID,
         valid=lambda m: nir_ok(m.group()), where="digits", min_digits=13),
    Rule("de_tax_id", _rx(_B + r"[1-9]\d(?: ?\d{3}){3}" + _E), NATIONAL_ID, valid=lambda m: de_taxid_ok(m.group()),
         where="digits", min_digits=11),
    Rule("us_ssn", _rx(_B + r"(?P<a>\d{3})(?P<sep>[\- ])(?P<g>\d{2})(?P=sep)(?P<s>\d{4})" + _E), NATIONAL_ID,
         valid=_ssn, where="digits", min_digits=9),
    Rule("uk_nino", _rx(r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
                        r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"), NATIONAL_ID, where="digits",
         min_digits=6),
    Rule("es_dni", _rx(r"(?<![A-Za-z0-9])(?:(?P<nie>[XYZ])[ \-]?(?P<n7>\d{7})|(?P<n8>\d{8}))[ \-]?(?P<l>[A-Z])"
                       r"(?![A-Za-z0-9])"), NATIONAL_ID, valid=_dni, where="digits", min_digits=7),
    Rule("nl_bsn", _rx(r"(?<![\d.])(?:\d{9}|\d{4}\.\d{2}\.\d{3}|\d{3} \d{3} \d{3})(?![\d.])"), NATIONAL_ID,
         valid=lambda m: _after_bsn(m) and bsn_ok(m.group()), where="digits", min_digits=9),
    Rule("phone", _rx(_B + r"(?:\+\d[\d \-.()/]{5,22}\d"
                      r"|(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[\-. ])[2-9]\d{2}[\-. ]\d{4}"
                      r"|(?<!\d[ \-])0\d{1,4}(?:[ \-/]\d{2,4}){1,4})" + _E), PHONE, valid=_phone, where="digits", min_digits=8),
    Rule("phone", _rx(r"(?<![\w+])\+?\d[\d \-.()/]{5,20}\d" + _E), PHONE,
         valid=lambda m: _after_phone_label(m) and 7 <= len(digits(m.group())) <= 15, where="digits",
         min_digits=7),
)


class PiiGuard(RegexGuard):
    """Kind ``pii``. Findings' categories: email, phone, card, iban, us_ssn, uk_nino, nl_bsn, es_dni,
    de_tax_id, fr_nir."""

    name = "pii"
    kind: Literal["pii", "secrets", "injection"] = "pii"
    rules = PII_RULES
