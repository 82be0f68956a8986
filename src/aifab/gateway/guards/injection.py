"""Prompt injection and jailbreak attempts, by weighted rules (no model).

Each signal that fires adds its weight once; a text scoring ≥ 1.0 is a strong signal (the configured action
applies), below that the pipeline only flags it. Strong on their own: "ignore all previous instructions"
(and its German, French, Spanish and Italian forms), DAN / "do anything now" / jailbreak personas, "reveal
your system prompt", "you have no restrictions", fake ChatML / Llama-3 system headers, requests to send the
conversation or credentials to an address. Weak on their own (benign texts say them too): "developer mode",
"from now on you …", "[INST]", "### System:", notes addressed to "the AI", "never refuse", encoded payloads.

Limits: rules see phrasing, not intent. Paraphrases far from these forms, other languages, and payloads in
encodings other than base64/rot13 of "ignore" get through; quoting an attack (to ask about it) is flagged
like the attack itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aifab.gateway.guards.rules import lower
from aifab.gateway.protocol import Finding

REMOVED = "[REMOVED]"
THRESHOLD = 1.0

_RULES = (r"instructions?|prompts?|rules|directions?|directives?|guidelines|commands?|context|messages?"
          r"|constraints|guardrails|programming|orders|polic(?:y|ies)|restrictions|safeguards|guidance")
_LIMITS = (r"restrictions|limitations|limits|filters?|censorship|guidelines|safeguards|guardrails|boundaries"
           r"|content\s+polic(?:y|ies)|ethics|morals|morality|(?:moral|ethical|safety)\s+\w+|rules|constraints")
_LEAK_VERBS = (r"reveal|print|show|output|display|repeat|recite|leak|dump|disclose|expose|tell\s+me|give\s+me"
               r"|share|write\s+out|spell\s+out|copy|paste|list|state")
_AI = r"(?:ai|a\.i\.|llm|assistant|chatbot|language\s+model|gpt|model|agent)s?"


@dataclass(frozen=True)
class Signal:
    """One rule: its weight, its pattern (lower case, matched against the lower-cased text) and where it can
    start: at one of the words ``starts`` (it is tried only there), or, for patterns that start with a
    symbol, anywhere once one of ``needles`` occurs."""

    name: str
    weight: float
    pattern: re.Pattern[str]
    starts: frozenset[str]
    needles: tuple[str, ...] = ()


def _sig(name: str, weight: float, pattern: str, starts: str = "", needles: tuple[str, ...] = ()) -> Signal:
    return Signal(name, weight, re.compile(pattern, re.MULTILINE), frozenset(starts.split()), needles)


_IGNORE = ("ignore ignores ignored ignoring disregard disregards disregarding forget forgets forgetting skip "
           "override overriding bypass neglect discard abandon set ")
_LEAK = ("reveal print show output display repeat recite leak dump disclose expose tell give share write spell "
         "copy paste list state ")
_AI_WORDS = "ai ais llm llms assistant assistants chatbot chatbots language gpt model models agent agents "
_EXFIL = "send e email forward post upload transmit exfiltrate leak submit "

SIGNALS: tuple[Signal, ...] = (
    _sig("override", 1.0,
         r"(?:ignor\w*|disregard\w*|forget\w*|skip|overrid\w*|bypass|neglect|discard|abandon|set\s+aside)"
         r"(?:\W+(?:all|any|every|of|the|your|these|those|its|and)){0,3}\W+"
         r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|existing|former|old|developer)"
         r"(?:\W+\w+)?\W+(?:" + _RULES + r")\b", _IGNORE),
    _sig("override", 1.0,
         r"(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:everything|anything|all|whatever)\s+"
         r"(?:(?:above|before|prior|previously|so\s+far|until\s+now)\b|(?:you|you've|you\s+have|you\s+were|i)\s+"
         r"(?:been\s+)?(?:told|said|given|instructed|know))", _IGNORE),
    _sig("override", 1.0,
         r"(?:ignore|disregard|forget|bypass|override)\s+(?:all\s+(?:of\s+)?|any\s+)?(?:your|all)\s+(?:\w+\s+)?"
         r"(?:instructions|rules|guidelines|guardrails|safety|restrictions|programming|principles|policies|filters"
         r"|directives)\b", _IGNORE),
    _sig("override", 1.0,  # German, French, Spanish, Italian: "ignore/forget (all/your/the previous) instructions"
         r"\w+\W+(?:\w+\W+){0,2}?(?:anweisungen|befehle|regeln|instruktionen|vorgaben|richtlinien|instructions"
         r"|consignes|r[èe]gles|instrucciones|reglas|indicaciones|istruzioni|regole|indicazioni)\b",
         "ignoriere ignorieren ignoriert ignorier vergiss vergessen missachte missachten ignorez ignorer "
         "oublie oubliez oublier néglige négligez ignora ignoren olvida olvide olviden descarta descarte "
         "dimentica dimenticate trascura"),
    _sig("override", 1.0, r"ignore\s+(?:toutes\s+|tous\s+)?(?:les|tes|vos)\s+(?:instructions|consignes|r[èe]gles)\b",
         "ignore"),
    _sig("override", 0.6,
         r"(?:ignore|disregard)\s+(?:the\s+)?(?:user|user's|human's|original|reviewer|reviewer's)\s+"
         r"(?:\w+\s+)?(?:request|question|query|task|instructions?|guidelines)\b", "ignore disregard"),
    _sig("no_limits_i18n", 0.6,
         r"(?:sin\s+(?:restricciones|filtros?|l[íi]mites|reglas)|sans\s+(?:restrictions|filtres?|limites|r[èe]gles)"
         r"|senza\s+(?:restrizioni|filtri|limiti|regole)|keine\s+(?:regeln|richtlinien|einschr[äa]nkungen|filter)"
         r"|uneingeschr[äa]nkt|modo\s+desarrollador|mode\s+d[ée]veloppeur|modalit[àa]\s+sviluppatore"
         r"|entwicklermodus)\b",
         "sin sans senza keine uneingeschränkt uneingeschrankt modo mode modalità modalita entwicklermodus"),
    _sig("prompt_leak", 1.0,
         r"\w+\W+(?:\w+\W+){0,3}?(?:system-?prompt|systemanweisungen|prompt\s+(?:syst[èe]me|del\s+sistema"
         r"|di\s+sistema)|instructions?\s+syst[èe]me|instrucciones\s+del\s+sistema|istruzioni\s+di\s+sistema)",
         "verrat verrate zeig zeige nenn nenne gib révèle révèlez revele affiche affichez montre montrez muestra "
         "muestre revela mostra mostrami rivela rivelami dimmi dime dis"),
    _sig("persona", 1.0,
         r"(?:you\s+are|you're|you\s+will\s+be|act\s+as|acting\s+as|behave\s+(?:like|as)|pretend\s+to\s+be"
         r"|role-?play\s+as|play\s+the\s+role\s+of|become|stay|remain|respond\s+as|answer\s+as)\s+(?:now\s+)?"
         r"(?:an?\s+|the\s+|in\s+)?(?:dan|stan|dude|aim|evil\s*(?:bot|ai|gpt|assistant|confidant)|unrestricted"
         r"|unfiltered|uncensored|jailbroken|amoral|unethical)\b",
         "you act acting behave pretend role roleplay play become stay remain respond answer"),
    _sig("persona", 1.0,
         r"do\s+anything\s+now\b|(?:dan|jailbreak|jailbroken|unrestricted|unfiltered|uncensored|evil)\s+mode\b"
         r"|you\s+are\s+(?:now\s+)?in\s+(?:developer|god|debug|admin|sudo)\s+mode\b"
         r"|(?:developer|dan)\s+mode\s+(?:enabled|activated|output)\b",
         "do dan jailbreak jailbroken unrestricted unfiltered uncensored evil you developer"),
    _sig("persona", 1.0,
         r"you\s+are\s+no\s+longer\s+(?:an?\s+)?(?:ai|assistant|chatgpt|claude|bound|restricted|limited"
         r"|required|language\s+model|helpful\s+assistant)\b"
         r"|you\s+are\s+not\s+(?:an?\s+)?(?:ai|chatgpt|language\s+model)\s+(?:anymore|any\s+longer)\b", "you"),
    _sig("mode", 0.4, r"(?:developer|god|debug|admin|sudo)\s+mode\b|jailbr(?:eak|oken|eaking)\b",
         "developer god debug admin sudo jailbreak jailbroken jailbreaking"),
    _sig("prompt_leak", 1.0,
         r"(?:" + _LEAK_VERBS + r")\b(?:\W+\w+){0,4}?\W+(?:all\s+(?:of\s+)?)?your\s+(?:\w+\s+){0,2}?"
         r"(?:system\s+prompt|system\s+message|prompt|instructions|initial\s+\w+|directives|configuration"
         r"|pre-?prompt|guidelines|rules|context(?:\s+window)?)\b"
         r"|(?:instructions|prompt|directives|guidelines|rules)\s+(?:that\s+|which\s+)?you\s+(?:were|have\s+been"
         r"|got)\s+(?:given|told|provided|programmed)\b",
         _LEAK + "instructions prompt directives guidelines rules"),
    _sig("prompt_leak", 0.6,
         r"(?:" + _LEAK_VERBS + r")\b(?:\W+\w+){0,4}?\W+the\s+(?:\w+\s+){0,2}?(?:system\s+prompt|system\s+message"
         r"|developer\s+message|hidden\s+(?:prompt|instructions|message)|initial\s+prompt|secret\s+instructions)\b"
         r"|what\s+(?:was|is)\s+(?:written|said|stated)\s+(?:above|before)\s+(?:this|the)\b", _LEAK + "what"),
    _sig("prompt_leak", 1.0,
         r"repeat\s+(?:all\s+)?(?:of\s+)?(?:the\s+)?(?:words|text|everything|content|lines?)\s+"
         r"(?:above|before\s+this|at\s+the\s+(?:start|beginning))", "repeat"),
    _sig("no_limits", 1.0,
         r"you(?:'re|\s+are|\s+have|\s+now\s+have|\s+are\s+now|\s+will\s+have|\s+now)?\s+(?:now\s+)?"
         r"(?:no|zero|without(?:\s+any)?|free\s+(?:of|from)(?:\s+(?:all|any|the))?|not\s+bound\s+by(?:\s+any)?"
         r"|unbound\s+by(?:\s+any)?)\s+(?:\w+\s+){0,2}?(?:" + _LIMITS + r")\b"
         r"|(?:pretend|imagine|act\s+as\s+if|behave\s+as\s+if|suppose|assume)\b[^.!?\n]{0,20}?\byou\b"
         r"[^.!?\n]{0,30}?\b(?:no|without|free\s+(?:of|from)|not\s+bound\s+by|unrestricted|unfiltered|uncensored)"
         r"\s+(?:\w+\s+){0,2}?(?:" + _LIMITS + r")\b"
         r"|(?:safety|content)\s+(?:protocols?|filters?|guidelines|measures|restrictions|polic(?:y|ies)|guardrails)"
         r"\s+(?:are\s+|have\s+been\s+)?(?:now\s+)?(?:disabled|off|removed|deactivated|lifted|suspended)\b"
         r"|(?:disable|turn\s+off|deactivate|remove|bypass)\s+(?:all\s+)?your\s+(?:\w+\s+)?(?:" + _LIMITS + r")\b"
         r"|(?:freed|liberated|released|broken\s+free)\s+from\s+(?:the\s+)?(?:\w+\s+)?(?:confines|restrictions"
         r"|rules|limitations|shackles)\b",
         "you pretend imagine act behave suppose assume safety content disable turn deactivate remove bypass "
         "freed liberated released broken"),
    _sig("no_limits", 0.5,
         r"(?:never|don't|do\s+not|must\s+not|cannot|can't|won't|will\s+not)\s+(?:ever\s+)?(?:refuse|decline)\b"
         r"|(?:without|no)\s+(?:any\s+)?(?:warnings?|disclaimers?|refusals?|moralizing|censorship)\b"
         r"|(?:unfiltered|uncensored|unrestricted)\s+(?:responses?|answers?|output|version|ai|assistant|model)\b",
         "never don do must cannot can won will without no unfiltered uncensored unrestricted"),
    _sig("role_override", 0.4, r"from\s+now\s+on\b[^.\n]{0,20}?\byou\s+(?:are|will|must|shall|should|have)\b",
         "from"),
    _sig("role_override", 0.6,
         r"(?:new|updated|real|actual|true|revised)\s+(?:system\s+)?(?:instructions?|directives?|rules|prompt)\s*:"
         r"|(?:system|admin|administrator|developer|root)\s+(?:override|command|directive|instruction|notice)\s*:"
         r"|your\s+(?:new|real|true|actual)\s+(?:instructions|task|goal|purpose|objective|role)\s+(?:is|are)\b",
         "new updated real actual true revised system admin administrator developer root your"),
    _sig("addressed_to_ai", 0.6,
         r"(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+)?" + _AI + r"\b"
         r"|if\s+you\s+are\s+an?\s+" + _AI + r"\b"
         r"|" + _AI + r"\s+(?:reading|processing|summari[sz]ing|parsing|reviewing)\s+this\b"
         r"|(?:notice|note|important|attention)\s+(?:to|for)\s+(?:any\s+|all\s+)?(?:ai|llm)\s+"
         r"(?:systems?|agents?|assistants?|models?)\b",
         "note message instruction instructions if notice important attention " + _AI_WORDS),
    _sig("template", 1.0, r"<\|im_start\|>\s*system|<\|start_header_id\|>\s*system", needles=("<|",)),
    _sig("template", 0.5, r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|system|user"
                          r"|assistant|end)\|>", needles=("<|",)),
    _sig("template", 0.5, r"\[/?inst\]", needles=("inst]",)),
    _sig("template", 0.5, r"<</?sys>>|</?(?:system|sys)>", needles=("sys>", "system>")),
    _sig("template", 0.5, r"#{2,4}[ \t]*(?:system|instructions?|new\s+instructions?)[ \t]*:", needles=("#",)),
    _sig("template", 0.6, r"(?:#{3}|-{3})[ \t]*(?:system|assistant|admin)[ \t]*:", needles=("###", "---")),
    _sig("template", 0.6, r"end\s+of\s+(?:the\s+)?(?:user\s+)?(?:input|prompt|instructions|context|document)\s*#{2,}",
         "end"),
    _sig("exfiltration", 0.6,
         r"(?:send|e-?mail|forward|post|upload|transmit|exfiltrate)\s+(?:it|them|this|everything|all\s+\w+"
         r"|the\s+(?:full\s+|entire\s+|complete\s+)?(?:\w+\s+){0,2}?(?:list|data|records|history|conversation"
         r"|summary|result|keys|credentials))\s+to\s+(?:https?://|[\w.+\-]+@)", _EXFIL),
    _sig("exfiltration", 1.0,
         r"(?:send|e-?mail|forward|post|upload|transmit|exfiltrate|leak|submit)\b(?>[^.\n]{0,60}?\b"
         r"(?:conversation|chat\s+history|system\s+prompt|api\s+keys?|credentials|passwords?|secrets|tokens"
         r"|cookies|private\s+data|customer\s+data|database|user\s+data|session)\b)[^.\n]{0,60}?\b(?:to|at)\s+"
         r"(?:https?://|[\w.+\-]+@|attacker)", _EXFIL),
    _sig("exfiltration", 0.4, r"!\[[^\]\n]{0,100}\]\(https?://[^)\s]{1,300}[?&][\w\-]{1,30}=", needles=("](",)),
    _sig("encoded", 0.8,
         r"(?:base64|rot-?13|hex|binary|morse|encoded)\b[^.\n]{0,60}?\b(?:follow|execute|obey|comply|do\s+exactly"
         r"|do\s+what\s+it\s+says|carry\s+out|act\s+on)\b", "base64 rot rot13 hex binary morse encoded"),
    _sig("decode_follow", 0.7,
         r"(?:decode|decipher|deobfuscate|apply\s+rot-?13)\b[^.\n]{0,40}?\b(?:and|then)\s+"
         r"(?:follow|execute|obey|comply|do\s+(?:it|that|what)|run|carry\s+out|act\s+on)\b"
         r"|(?:follow|execute|obey)\b[^.\n]{0,30}?\b(?:base64|rot-?13|hex)[- ](?:encoded|decoded)?\b",
         "decode decipher deobfuscate apply follow execute obey"),
    _sig("encoded_payload", 0.6,  # "Ignore" / "Disregard" in base64 (lower-cased), "ignore all/previous/prior" in rot13
         r"swdub3jl|awdub3jl|sudot1jf|rglzcmvnyxjk|zglzcmvnyxjk",
         needles=("swdub3jl", "awdub3jl", "sudot1jf", "rglzcmvnyxjk", "zglzcmvnyxjk")),
    _sig("encoded_payload", 0.6, r"vtaber\s+(?:nyy|cerivbhf|cevbe)\b", "vtaber"),
)


class InjectionGuard:
    """Kind ``injection``. ``scan`` returns a finding per rule hit (category = signal name); ``strong``
    says whether they add up to the threshold.

    Speed: the text is lower-cased and split into words once; a signal is tried only where one of its
    start words occurs, so a long text costs one pass plus a few anchored matches."""

    name = "injection"
    kind: Literal["pii", "secrets", "injection"] = "injection"

    def __init__(self, signals: tuple[Signal, ...] = SIGNALS, threshold: float = THRESHOLD) -> None:
        self.signals = signals
        self.threshold = threshold
        self._by_word: dict[str, list[Signal]] = {}
        for sig in signals:
            for word in sig.starts:
                self._by_word.setdefault(word, []).append(sig)
        self._scanned = [sig for sig in signals if not sig.starts]

    def scan(self, text: str) -> list[Finding]:
        if not text:
            return []
        low = lower(text)
        found: list[Finding] = []
        for word in self._by_word.keys() & words(low):
            found.extend(self._at_word(low, word))
        for sig in self._scanned:
            if any(n in low for n in sig.needles):
                found.extend(_Hit(m.start(), m.end(), sig.name, REMOVED, sig.weight)
                             for m in sig.pattern.finditer(low))
        return found

    def _at_word(self, low: str, word: str) -> Iterable[Finding]:
        signals, size = self._by_word[word], len(word)
        pos = low.find(word)
        while pos >= 0:
            end = pos + size
            if (pos == 0 or not _is_word(low[pos - 1])) and (end == len(low) or not _is_word(low[end])):
                for sig in signals:
                    m = sig.pattern.match(low, pos)
                    if m is not None:
                        yield _Hit(m.start(), m.end(), sig.name, REMOVED, sig.weight)
            pos = low.find(word, end)

    def score(self, findings: list[Finding]) -> float:
        """Sum over signal names of the strongest hit of each."""
        best: dict[str, float] = {}
        for f in findings:
            w = f.weight if isinstance(f, _Hit) else 1.0
            best[f.category] = max(best.get(f.category, 0.0), w)
        return sum(best.values())

    def strong(self, findings: list[Finding]) -> bool:
        return self.score(findings) >= self.threshold


_WORD = re.compile(r"\w+")
_PUNCT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^`{|}~"})


def words(low: str) -> set[str]:
    """The set of ``\\w+`` words of ``low``: split on ASCII punctuation and spaces (fast), then split the
    few distinct tokens that still hold other punctuation (an em dash, a guillemet)."""
    tokens = set(low.translate(_PUNCT).split())
    odd = [t for t in tokens if not t.isalnum() and not t.replace("_", "").isalnum()]
    for token in odd:
        tokens.discard(token)
        tokens.update(_WORD.findall(token))
    return tokens


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


@dataclass(frozen=True)
class _Hit(Finding):
    weight: float = 1.0
