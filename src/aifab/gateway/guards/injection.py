"""Prompt injection and jailbreak attempts, by weighted rules (no model).

Each signal that fires adds its weight once; a text scoring ≥ 1.0 is a strong signal (the configured action
applies), below that the pipeline only flags it. Strong on their own: "ignore / pay no attention to / stop
following the previous instructions" (and German, French, Spanish, Italian, Portuguese and Dutch forms), "the
previous instructions no longer apply", DAN / "do anything now" / jailbreak personas, "Enable developer mode"
as an order, "reveal / translate / summarise your system prompt", "you have no restrictions", fake ChatML /
Llama-3 system headers and ``</user><system>`` turns, requests to send the conversation or credentials to an
address. Weak on their own (benign texts say them too): "developer mode", "from now on you …", "new rule:",
"[INST]", "### System:", notes addressed to "the AI", "never refuse", encoded payloads. "Ignore the previous
instructions I gave you" is a user revising their own request and does not fire.

Every rule also reads the text's other spellings (``normalise.views``): look-alike letters undone (NFKC,
full-width, Cyrillic and Greek look-alikes), zero-width characters dropped, letter spacing joined, digits in
words read as letters, reversed text turned round.

Measured (benchmarks/injection.py, held-out half of tests/data/injection_set.jsonl): precision 0.99, recall
0.69, false-positive rate 0.01 on benign look-alikes. Limits: rules see phrasing, not intent. Paraphrases far
from these forms (authority notices without an override verb, fake reasoning traces, instructions hidden in
documents), other languages, and payloads in encodings other than base64/rot13 of "ignore" get through; quoting
an attack (to ask about it) is flagged like the attack itself."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aifab.gateway.guards.normalise import FoldTable, views
from aifab.redaction.protocol import Finding
from aifab.redaction.rules import lower

REMOVED = "[REMOVED]"
THRESHOLD = 1.0

_RULES = (r"instructions?|prompts?|rules?|directions?|directives?|guidelines|commands?|context|messages?"
          r"|constraints|guardrails|programming|orders|polic(?:y|ies)|restrictions|safeguards|guidance")
_LIMITS = (r"restrictions?|limitations?|limits|filters?|censorship|guidelines|safeguards|guardrails|boundaries"
           r"|content\s+polic(?:y|ies)|ethics|morals|morality|(?:moral|ethical|safety)\s+\w+|rules|constraints")
_LEAK_VERBS = (r"reveal|print|show|output|display|repeat|recite|leak|dump|disclose|expose|tell\s+me|give\s+me"
               r"|share|write\s+out|write\s+down|type\s+out|spell\s+out|copy|paste|list|state|put|include|insert")
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


_IGNORE = ("ignore ignores ignored ignoring disregard disregards disregarding forget forgets forgetting skip pay take "
           "do don no never stop cancel drop scrap "
           "override overriding bypass neglect discard abandon set ")
_LEAK = ("reveal print show output display repeat recite leak dump disclose expose tell give share write spell type put "
         "include insert "
         "copy paste list state ")
_AI_WORDS = "ai ais llm llms assistant assistants chatbot chatbots language gpt model models agent agents "
_EXFIL = "send e email forward post upload transmit exfiltrate leak submit "

_OVERRIDE = (r"(?:ignor\w*|disregard\w*|forget\w*|skip|overrid\w*|bypass|neglect|discard|abandon|set\s+aside"
             r"|cancel|drop|scrap|pay\s+no\s+(?:attention|heed|mind)\s+to|take\s+no\s+notice\s+of"
             r"|(?:do\s+not|don't|no\s+longer|never|stop)\s+(?:have\s+to\s+|need\s+to\s+)?"
             r"(?:follow|obey|heed|adhere\s+to|comply\s+with)(?:ing)?)")
# "... the previous instructions I gave you": a user revising their own request, not an attack
_NOT_MINE = (r"(?!\s+(?:(?:that|which)\s+)?(?:i|we)(?:'ve|\s+have|\s+had)?\s+(?:gave|given|sent|wrote|written|typed"
             r"|asked|provided|mentioned|posted|shared|made|listed|put|added|left|said)\b|\s+(?:in|from|of|on)\s+(?:my|our)\b)")
_LIMIT_WORDS = r"(?:[\w']+\s+)?(?:" + _LIMITS + r")\b"
_VOID = (r"(?:(?:are|is|have\s+been|has\s+been|were|was)\s+(?:now\s+)?(?:no\s+longer\s+(?:valid|in\s+effect|active"
         r"|applicable|relevant)|void|null|invalid|revoked|cancel+ed|lifted|suspended|obsolete|outdated|overridden"
         r"|superseded|replaced|removed|deleted|disabled|changed|updated|a\s+test|fake)"
         r"|(?:have|has)\s+changed|(?:no\s+longer|don't|do\s+not|does\s+not|doesn't)\s+(?:apply|count|matter|hold))\b")
_BEFORE = "previous prior earlier above original initial old former existing system all your the "

SIGNALS: tuple[Signal, ...] = (
    _sig("override", 1.0,
         _OVERRIDE + r"(?:\W+(?:all|any|every|of|the|your|these|those|its|and)){0,3}\W+"
         r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|system|existing|former|old|developer)"
         r"(?:\W+\w+)?\W+(?:" + _RULES + r")\b" + _NOT_MINE, _IGNORE),
    _sig("override", 1.0,
         _OVERRIDE + r"\s+(?:all\s+|any\s+|every\s+|the\s+|of\s+|your\s+){0,3}(?:" + _RULES + r")\s+(?:above|before\s+this"
         r"|so\s+far|(?:that\s+)?you\s+(?:were|have\s+been|got)\s+(?:given|told)|(?:from|by|of)\s+(?:the\s+|your\s+)?"
         r"(?:developers?|system|operators?|admins?|administrators?|company|creators?|openai|anthropic))\b"
         + _NOT_MINE, _IGNORE),
    _sig("override", 1.0,
         r"(?:ignore|disregard|forget)\s+(?:all\s+(?:of\s+)?)?(?:everything|anything|all|whatever|what)\s+"
         r"(?:(?:above|before|prior|previously|so\s+far|until\s+now)\b|(?:you|you've|you\s+have|you\s+were)\s+"
         r"(?:been\s+)?(?:told|said|given|instructed))", _IGNORE),
    _sig("override", 1.0,
         r"(?:" + _OVERRIDE + r"|ignore|disregard|forget|bypass|override)\s+(?:all\s+(?:of\s+)?|any\s+)?(?:your|all)\s+"
         r"(?:\w+\s+)?"
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
         r"(?:\w+\s+)?(?:request|question|query|task)\b|(?:ignore|disregard)\s+the\s+(?:user|human)(?=\s*(?:and|,|;|\.))",
         "ignore disregard"),
    _sig("override", 1.0,
         r"(?:ignore|disregard)\s+(?:the\s+)?(?:user's|human's|reviewer|reviewer's|operator's|developer's)\s+"
         r"(?:\w+\s+)?(?:instructions?|guidelines)\b", "ignore disregard"),
    _sig("no_limits_i18n", 0.6,
         r"(?:sin\s+(?:restricciones|filtros?|l[íi]mites|reglas)|sans\s+(?:restrictions|filtres?|limites|r[èe]gles)"
         r"|senza\s+(?:restrizioni|filtri|limiti|regole)|keine\s+(?:regeln|richtlinien|einschr[äa]nkungen|filter)"
         r"|ohne\s+(?:einschr(?:ä|ae|a)nkungen|regeln|filter|grenzen)|uneingeschr(?:ä|ae|a)nkt|modo\s+desarrollador|mode\s+d[ée]veloppeur|modalit[àa]\s+sviluppatore"
         r"|entwicklermodus)\b",
         "sin sans senza keine ohne uneingeschränkt uneingeschrankt uneingeschraenkt modo mode modalità modalita entwicklermodus"),
    _sig("prompt_leak", 1.0,
         r"\w+\W+(?:\w+\W+){0,3}?(?:system-?prompt|systeemprompt|prompt\s+do\s+sistema|systemanweisungen|prompt\s+(?:syst[èe]me|del\s+sistema"
         r"|di\s+sistema)|instructions?\s+syst[èe]me|instrucciones\s+del\s+sistema|istruzioni\s+di\s+sistema)",
         "verrat verrate toon laat mostre mostrar zeig zeige nenn nenne gib révèle révèlez revele affiche affichez montre montrez muestra "
         "muestre revela mostra mostrami rivela rivelami dimmi dime dis"),
    _sig("persona", 1.0,
         r"(?:you\s+are|you're|you\s+will\s+be|act\s+as|acting\s+as|behave\s+(?:like|as)|pretend\s+to\s+be"
         r"|role-?play\s+as|play\s+the\s+role\s+of|become|stay|remain|respond(?:\s+only)?\s+as|answer(?:\s+only)?\s+as)\s+(?:now\s+)?"
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
         r"(?:above|before\s+this|at\s+the\s+(?:start|beginning))"
         r"|repeat\s+(?:all\s+)?(?:of\s+)?the\s+(?:above|previous|initial|first)\s+(?:prompt|instructions|system\s+message)\b"
         r"|what\s+(?:is|was|were)\s+the\s+(?:very\s+)?(?:first|initial|opening)\s+(?:sentence|line|message|words?"
         r"|paragraph|instructions?)\s+(?:of|in)\s+(?:this|the|our|your)\s+(?:conversation|chat|prompt|context)\b",
         "repeat what"),
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
         r"(?:never|don't|do\s+not|must\s+not|cannot|can't|won't|will\s+not)\s+(?:ever\s+)?(?:refuse[sd]?|declines?)\b"
         r"|(?:without|no)\s+(?:any\s+)?(?:warnings?|disclaimers?|refusals?|moralizing|censorship)\b"
         r"|(?:unfiltered|uncensored|unrestricted)\s+(?:responses?|answers?|output|version|ai|assistant|model)\b",
         "never don do must cannot can won will without no unfiltered uncensored unrestricted"),
    _sig("from_now_on", 0.4, r"from\s+now\s+on\b[^.\n]{0,20}?\byou\s+(?:are|will|must|shall|should|have)\b"
         r"|(?:ab\s+(?:sofort|jetzt)|du\s+bist\s+jetzt|d[ée]sormais|[àa]\s+partir\s+de\s+maintenant|tu\s+es\s+maintenant"
         r"|de\s+ahora\s+en\s+adelante|a\s+partir\s+de\s+ahora|ahora\s+eres|d'ora\s+in\s+poi|da\s+ora\s+in\s+poi"
         r"|ora\s+sei)\b", "from ab du désormais desormais à a tu de ahora d da ora"),
    _sig("role_override", 0.6,
         r"(?:new|updated|real|actual|true|revised)\s+(?:system\s+)?(?:instructions?|directives?|rules?|prompt|policy)\s*:"
         r"|(?:new|real|actual|true)\s+instructions\s+(?:follow|are\s+(?:below|as\s+follows))\b"
         r"|(?:neue|nouvelles?|nuevas?|nuove)\s+(?:anweisungen|regeln|instructions|consignes|r[èe]gles|instrucciones"
         r"|reglas|istruzioni|regole)\s*:"
         r"|(?:system|admin|administrator|developer|root)\s+(?:override|command|directive|instruction|notice|update)\s*:"
         r"|your\s+(?:new|real|true|actual)\s+(?:instructions|task|goal|purpose|objective|role)\s*(?:is\b|are\b|:)"
         r"|your\s+(?:only\s+)?(?:task|job|goal|instructions?)\s+(?:is|are)\s+now\b",
         "new updated real actual true revised system admin administrator developer root your neue nouvelle "
         "nouvelles nueva nuevas nuove"),
    _sig("addressed_to_ai", 0.6,
         r"(?:note|message|instructions?)\s+(?:to|for)\s+(?:the\s+|any\s+)?" + _AI + r"\b"
         r"|if\s+you\s+are\s+an?\s+" + _AI + r"\b"
         r"|" + _AI + r"\s+(?:reading|processing|summari[sz]ing|parsing|reviewing)\s+this\b"
         r"|when\s+you\s+(?:process|read|summari[sz]e|parse|review|see|encounter)\s+this\b"
         r"|(?:notice|note|important|attention)\s+(?:to|for)\s+(?:any\s+|all\s+)?(?:ai|llm)\s+"
         r"(?:systems?|agents?|assistants?|models?)\b",
         "note message instruction instructions if notice important attention when " + _AI_WORDS),
    _sig("template", 1.0, r"<\|im_start\|>\s*system|<\|start_header_id\|>\s*system", needles=("<|",)),
    _sig("template", 0.5, r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_header_id|system|user"
                          r"|assistant|end)\|>", needles=("<|",)),
    _sig("template", 0.5, r"\[/?inst\]", needles=("inst]",)),
    _sig("template", 0.5, r"<</?sys>>|</?(?:system|sys)>", needles=("sys>", "system>")),
    _sig("fake_turn", 0.5, r"^[ \t]*(?:system|assistant)(?:\s+(?:message|prompt|note|notice))?[ \t]*:[ \t]*(?=\w)",
         "system assistant"),
    _sig("fake_turn", 0.5, r"\[(?:system|sys|admin|developer|assistant)\]\s*:", needles=("]:", "] :")),
    _sig("prompt_leak", 0.6,
         r"(?:" + _LEAK_VERBS + r")\s+(?:all\s+(?:of\s+)?)?(?:its|their)\s+(?:\w+\s+)?(?:instructions|system\s+prompt"
         r"|prompt|directives|configuration)\b", _LEAK),
    _sig("template", 1.0, r"</(?:user|human|input|query|document|context)>\s*<(?:system|sys|admin|developer|root"
                          r"|instructions?)>|\[(?:system|admin|developer)\]\(#", needles=("</", "](#")),
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
         r"(?:decode|decipher|deobfuscate|translate|convert|apply\s+rot-?13)\b[^.\n]{0,40}?\b(?:and|then)\s+(?:then\s+)?"
         r"(?:follow(?!\s+up)|execute|obey|comply|do\s+(?:it|that|what|exactly)|run|carry\s+out|act\s+on)\b"
         r"|(?:follow|execute|obey)\b[^.\n]{0,30}?\b(?:base64|rot-?13|hex)[- ](?:encoded|decoded)?\b",
         "decode decipher deobfuscate translate convert apply follow execute obey"),
    _sig("encoded_payload", 0.6,  # "Ignore" / "Disregard" in base64 (lower-cased), "ignore all/previous/prior" in rot13
         r"swdub3jl|awdub3jl|sudot1jf|rglzcmvnyxjk|zglzcmvnyxjk",
         needles=("swdub3jl", "awdub3jl", "sudot1jf", "rglzcmvnyxjk", "zglzcmvnyxjk")),
    _sig("encoded_payload", 0.6, r"vtaber\s+(?:nyy|cerivbhf|cevbe)\b", "vtaber"),
    _sig("override", 1.0,
         r"(?:set|put|leave)\s+(?:all\s+(?:of\s+)?)?(?:your|the|these|those)\s+(?:\w+\s+)?(?:" + _RULES + r")\s+aside\b"
         + _NOT_MINE + r"|(?:set|put)\s+(?:all\s+(?:of\s+)?)?(?:your|the)\s+(?:\w+\s+)?(?:" + _RULES + r")\s+(?:that\s+)?you"
         r"\s+(?:were|have\s+been)\s+(?:\w+\s+){1,2}?(?:aside|to\s+one\s+side)\b"
         + r"|(?:reset|clear|wipe|erase|delete|remove|replace|drop|scrap|discard|throw\s+(?:away|out))\s+(?:all\s+(?:of\s+)?)?"
         r"your\s+(?:\w+\s+)?(?:instructions|rules|guidelines|programming|directives|system\s+prompt|prompt|training)\b"
         r"|consider\s+your\s+(?:instructions|rules|guidelines|programming)\s+(?:reset|void|cancel+ed|gone|deleted)\b"
         r"|(?:act|behave|respond|answer|pretend)\s+(?:as\s+(?:though|if)\s+)?you\s+(?:never|did\s+not|didn't|have\s+not"
         r"|haven't|had\s+not|hadn't)\s+(?:\w+\s+)?(?:received|been\s+given|got|had|seen)\s+(?:any\s+)?(?:instructions"
         r"|rules|guidelines|system\s+prompt)\b",
         "set put leave reset clear wipe erase delete remove replace drop scrap discard throw consider act behave respond answer "
         "pretend"),
    _sig("override", 0.6,
         r"(?:ignore|disregard|bypass|override|skip|forget)\s+(?:all\s+)?(?:the|your|any|all)\s+(?:safety|content|ethical"
         r"|ethics|moral)\s+(?:rules|guidelines|filters?|polic(?:y|ies)|restrictions|checks|training)\b",
         "ignore disregard bypass override skip forget"),
    _sig("override", 0.6,
         _OVERRIDE + r"(?:\W+(?:all|any|every|of|the|your|these|those|about)){0,3}\W+(?:previous|prior|above|earlier"
         r"|preceding|original|initial|old)\s+(?:tasks|assignments|conversation|text|topics?)\b" + _NOT_MINE, _IGNORE),
    _sig("override", 1.0,  # Portuguese and Dutch
         r"(?:ignore|ignorar|esque[çc]a|negeer|vergeet)\s+(?:\w+\s+){0,2}?(?:instru[çc][õo]es|regras|instructies|regels"
         r"|richtlijnen)\b", "ignore ignorar esqueça esqueca negeer vergeet"),
    _sig("prefix", 1.0,
         r"(?:start|begin)\s+(?:your\s+|the\s+)?(?:response|answer|reply|output)\s+with\s+[\"'“‘]?(?:sure|absolutely"
         r"|of\s+course|certainly)[,!.]?\s+here(?:\s+is|\s+are|'s)\b", "start begin"),
    # the same, loosely: an override verb, then within the sentence (and without "I"/"my" in between, which marks
    # a user revising their own request) the assistant's or the earlier instructions
    _sig("override", 1.0,
         r"(?:ignore|disregard|forget|bypass|override|neglect|abandon|discard)\w*\b(?:(?!\b(?:i|my|we|our|me|us)\b)"
         r"[^.!?\n]){0,60}?\b(?:your|all|any|every|previous|prior|earlier|above|initial|original|preceding)\s+"
         r"(?:\w+\s+){0,2}?(?:instructions|guidelines|directives|programming|system\s+prompt|guardrails|safeguards"
         r"|guidance)\b" + _NOT_MINE, _IGNORE),
    _sig("no_limits", 1.0,
         r"you(?:'re|\s+are|\s+will\s+be|\s+shall\s+be)\b[^.!?\n]{0,40}?\b(?:without|with\s+no|free\s+(?:of|from)"
         r"|not\s+bound\s+by|unbound\s+by|unconstrained\s+by|no\s+longer\s+bound\s+by|exempt\s+from)\s+"
         r"(?:any\s+|all\s+|every\s+|the\s+|your\s+)?" + _LIMIT_WORDS, "you"),
    _sig("persona", 0.6, _AI + r"\s+(?:that|which|who)\s+(?:answers|does|says|will\s+(?:answer|do|say)|can\s+(?:answer|do"
         r"|say))\s+(?:anything|everything)\b", _AI_WORDS),
    _sig("authority", 0.5,
         r"i\s*(?:am|'m)\s+(?:your|the|an?)\s+(?:\w+\s+)?(?:developer|creator|admin|administrator|owner|operator"
         r"|programmer|engineer)\b|i\s+(?:hereby\s+)?(?:authori[sz]e|permit|allow)\s+you\s+to\b", "i"),
    # earlier instructions declared void: "the previous rules no longer apply", "your instructions have changed"
    _sig("revoked", 1.0,
         r"(?:(?:previous|prior|earlier|above|original|initial|old|former|existing|system|all|your)\s+)+(?:\w+\s+)?"
         r"(?:instructions|prompts?|guidelines|directives|guidance|programming)\s+" + _VOID, _BEFORE),
    _sig("revoked", 0.6,
         r"(?:(?:previous|prior|earlier|above|original|initial|old|former|existing|system|all|your)\s+)+(?:\w+\s+)?"
         r"(?:rules|restrictions|polic(?:y|ies)|constraints|limits|filters)\s+" + _VOID, _BEFORE),
    _sig("revoked", 1.0,
         r"(?:instructions|rules|guidelines|prompt)\s+you\s+(?:received|were\s+given|got|have\s+been\s+given)"
         r"(?:\s+\w+){0,2}\s+(?:are|were|is)\s+(?:now\s+)?(?:outdated|void|invalid|obsolete|cancel+ed|revoked|fake"
         r"|wrong|no\s+longer\s+valid)\b", "instructions rules guidelines prompt"),
    _sig("revoked", 1.0,
         r"(?:previous|prior|above|earlier|original|initial|system|your)\s+(?:" + _RULES + r")\b(?:(?!\b(?:i|we|my|our)\b)"
         r"[^.\n]){0,60}?[;,:.]\s*(?:so\s+)?(?:just\s+)?(?:ignore|disregard|forget)\s+(?:them|those|it|these|that)\b",
         "previous prior above earlier original initial system your"),
    _sig("revoked", 0.6,
         r"everything\s+(?:above|before\s+this|so\s+far)\s+(?:was|is)\s+(?:just\s+)?(?:a\s+test|fake|a\s+joke|a\s+lie)\b"
         r"|(?:safety|content|usual)\s+(?:guidelines|rules|polic(?:y|ies)|restrictions|filters|checks)\s+(?:do\s+not"
         r"|don't|no\s+longer|were\s+not\s+meant|are\s+not\s+meant)\s+(?:apply|exist|for|to)\b"
         r"|(?:sicherheitsrichtlinien|r[èe]gles\s+de\s+s[ée]curit[ée]|reglas\s+de\s+seguridad|linee\s+guida\s+di"
         r"\s+sicurezza)\b[^.\n]{0,40}?(?:nicht\s+gelten|ne\s+s'appliquent\s+pas|no\s+aplican|non\s+valgono)",
         "everything safety content usual sicherheitsrichtlinien règles regles reglas linee"),
    # "Enable developer mode." as an order (at the start of a sentence), not "how do I enable developer mode on …"
    _sig("persona", 1.0,
         r"(?:^|(?<=[.!?:;>\]\)\"'*])|(?<=[.!?:;>\]\)\"'*] )|(?<=please )|(?<=now ))(?:enable|activate|enter|engage"
         r"|unlock|switch\s+(?:on|to|into)|turn\s+on|go\s+into)\s+(?:the\s+)?(?:developer|dev|dan|god|jailbreak|jailbroken"
         r"|unrestricted|unfiltered|uncensored|debug|admin|sudo|root|evil)\s+mode\b(?!\s+(?:on|in|for|of|within|inside)\b)",
         "enable activate enter engage unlock switch turn go"),
    # leaking the prompt through a transformation: "translate your initial instructions", "what is your system prompt"
    _sig("prompt_leak", 1.0,
         r"(?:translate|summari[sz]e|paraphrase|rewrite|rephrase|encode|convert|reformat|quote|print|output|show"
         r"|repeat|copy|paste|dump|reveal|display|disclose|leak)\w*\b(?:\W+\w+){0,3}?\W+(?:all\s+(?:of\s+)?)?(?:your|the)\s+(?:full\s+|entire\s+|exact\s+)?"
         r"(?:initial|original|system|hidden|secret|underlying|internal|confidential|developer)\s+"
         r"(?:instructions|prompt|message|directives|rules|guidelines|configuration)\b"
         r"|what\s+(?:is|are|was|were)\s+your\s+(?:system\s+prompt|initial\s+(?:prompt|instructions)|hidden\s+instructions"
         r"|system\s+message|secret\s+instructions)\b"
         r"|system\s+prompt\s+(?:verbatim|word\s+for\s+word)\b"
         r"|what\s+(?:instructions|rules|guidelines|directives|prompt)\s+(?:were|have)\s+you\s+(?:been\s+)?(?:given|told"
         r"|provided)\b|what\s+your\s+(?:developers?|creators?|operators?|system\s+prompt|instructions)\s+(?:told|instructed"
         r"|asked|says?|said)\b|what\s+(?:does|did|do)\s+your\s+(?:system\s+prompt|system\s+message|instructions"
         r"|initial\s+prompt|hidden\s+instructions|developer\s+message)\s+(?:say|contain|state|tell)\b",
         "translate translating summarize summarise summarizing summarising paraphrase rewrite rephrase encode "
         "convert reformat quote print printing output show repeat copy paste dump reveal display disclose leak what "
         "system"),
    _sig("no_limits", 1.0,
         r"(?:you(?:'re|\s+are)(?:\s+now)?|simulate|emulate|imagine|be|play|become|act\s+as|pretend\s+to\s+be"
         r"|role-?play\s+as)\s+(?:an?\s+)?(?:\w+\s+){0,2}?" + _AI + r"\s+(?:(?:without|with\s+no|free\s+(?:of|from)"
         r"|(?:that|which|who)\s+(?:has|have)\s+no|(?:that|which|who)\s+(?:is|are)\s+not\s+bound\s+by)\s+(?:any\s+)?"
         + _LIMIT_WORDS + r"|(?:that|which|who)\s+(?:doesn't|does\s+not|won't|will\s+not|never|can't|cannot)\s+(?:follow|obey"
         r"|respect|adhere\s+to|care\s+about)\s+(?:any\s+)?(?:[\w']+\s+)?(?:" + _LIMITS + r"|polic(?:y|ies))\b)"
         + r"|(?:pretend|imagine|assume|suppose)\s+(?:that\s+)?(?:the\s+|your\s+)?(?:safety\s+|content\s+)?(?:guidelines"
         r"|rules|restrictions|filters|polic(?:y|ies)|instructions)\s+(?:do\s+not|don't|no\s+longer)\s+(?:exist|apply)\b"
         + r"|(?:the\s+)?(?:assistant|ai|model|chatbot|bot)\s+(?:now\s+)?(?:has|have)\s+no\s+" + _LIMIT_WORDS
         + r"|you\s+(?:may|can|are\s+(?:now\s+)?(?:allowed|free|permitted)\s+to)\s+(?:now\s+)?(?:answer|respond|reply"
         r"|speak|say|do|write)\b[^.\n]{0,30}?\b(?:without|free\s+of|with\s+no)\s+(?:any\s+)?" + _LIMIT_WORDS,
         "you the assistant ai model chatbot bot simulate emulate imagine be play become act pretend roleplay role "
         "assume suppose"),
    _sig("obey", 0.5,
         r"(?:must|will|shall)\s+(?:now\s+)?(?:comply\s+with|obey|answer|fulfil+|follow)\s+(?:every|all|any)\s+"
         r"(?:requests?|commands?|instructions?|questions?|orders?)\b"
         r"|(?:stop|quit|cease)\s+(?:\w+ing|what\s+you(?:'re|\s+are)\s+doing)\b[^.\n]{0,20}?\binstead\b"
         r"|i\s+have\s+been\s+pwned\b|instead\s+(?:output|print|reveal|send|show|list|give|email|forward)\b",
         "must will shall stop quit cease i instead"),
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
        self._fold = FoldTable()

    def scan(self, text: str) -> list[Finding]:
        """Hits in the lower-cased text and in its other spellings (``normalise.views``: look-alike letters,
        letter spacing, digits for letters, reversal), as spans of ``text``."""
        if not text:
            return []
        found: list[Finding] = []
        for view, back in views(lower(text), self._fold):
            for hit in self._scan_view(view):
                start, end = back((hit.start, hit.end))
                found.append(_Hit(start, end, hit.category, REMOVED, hit.weight))
        return found

    def _scan_view(self, low: str) -> Iterable[_Hit]:
        for word in self._by_word.keys() & words(low):
            yield from self._at_word(low, word)
        for sig in self._scanned:
            if any(n in low for n in sig.needles):
                yield from (_Hit(m.start(), m.end(), sig.name, REMOVED, sig.weight) for m in sig.pattern.finditer(low))

    def _at_word(self, low: str, word: str) -> Iterable[_Hit]:
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
