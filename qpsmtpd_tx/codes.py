"""Plugin return codes and log levels, with the numeric values qpsmtpd uses.

A hook returns one of the codes below, optionally with a message: ``OK``,
``(DENY, "text")``, or a Deferred/coroutine that produces either.
"""

OK = 900
DENY = 901
DENYSOFT = 902
DENY_DISCONNECT = 903
DENYHARD = DENY_DISCONNECT
DENYSOFT_DISCONNECT = 904
DECLINED = 909
DONE = 910
YIELD = 911
CONTINUATION = YIELD

RETURN_CODES = {
    "OK": OK,
    "DENY": DENY,
    "DENYSOFT": DENYSOFT,
    "DENY_DISCONNECT": DENY_DISCONNECT,
    "DENYHARD": DENYHARD,
    "DENYSOFT_DISCONNECT": DENYSOFT_DISCONNECT,
    "DECLINED": DECLINED,
    "DONE": DONE,
    "YIELD": YIELD,
    "CONTINUATION": CONTINUATION,
}
CODE_NAMES = {
    OK: "OK",
    DENY: "DENY",
    DENYSOFT: "DENYSOFT",
    DENY_DISCONNECT: "DENY_DISCONNECT",
    DENYSOFT_DISCONNECT: "DENYSOFT_DISCONNECT",
    DECLINED: "DECLINED",
    DONE: "DONE",
    YIELD: "YIELD",
}
DENY_CODES = frozenset({DENY, DENYSOFT, DENY_DISCONNECT, DENYSOFT_DISCONNECT})

LOGEMERG = 0
LOGALERT = 1
LOGCRIT = 2
LOGERROR = 3
LOGWARN = 4
LOGNOTICE = 5
LOGINFO = 6
LOGDEBUG = 7
LOGRADAR = 0

LOG_LEVELS = {
    "LOGEMERG": LOGEMERG,
    "LOGALERT": LOGALERT,
    "LOGCRIT": LOGCRIT,
    "LOGERROR": LOGERROR,
    "LOGWARN": LOGWARN,
    "LOGNOTICE": LOGNOTICE,
    "LOGINFO": LOGINFO,
    "LOGDEBUG": LOGDEBUG,
    "LOGRADAR": LOGRADAR,
}
LEVEL_NAMES = {v: k for k, v in LOG_LEVELS.items() if k != "LOGRADAR"}


def code_name(code):
    """Return the constant's name for a return code (``"DENY"``), or the number as text."""
    return CODE_NAMES.get(code, str(code))


def parse_return_code(word):
    """Map ``"DENY"``/``"901"`` to its number; raise ValueError for anything else."""
    word = word.strip()
    if word.upper() in RETURN_CODES:
        return RETURN_CODES[word.upper()]
    if word.isdigit() and int(word) in CODE_NAMES:
        return int(word)
    raise ValueError("unknown return code %r" % (word,))


def parse_log_level(word):
    """Map ``"LOGINFO"``/``"INFO"``/``"6"`` to a level number; raise ValueError otherwise."""
    word = word.strip()
    if word.isdigit() and 0 <= int(word) <= 7:
        return int(word)
    upper = word.upper()
    if not upper.startswith("LOG"):
        upper = "LOG" + upper
    if upper in LOG_LEVELS:
        return LOG_LEVELS[upper]
    raise ValueError("unknown log level %r" % (word,))
