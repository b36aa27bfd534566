"""The hook registry and the hook runner.

Plugins run in the order of the ``plugins`` file; for each hook the first result that is not
DECLINED ends the chain. A hook may answer at once or with a Deferred / coroutine; the runner
stays synchronous as long as the plugins do, so a chain of quick checks costs no reactor turn.

A plugin that waits gets a time limit: its own (``timeout=SECONDS`` on its ``plugins`` line)
or the registry's default (config item ``plugin_timeout``). When it runs out, the plugin's
Deferred is cancelled, the plugin and hook are logged, and the hook's result is DENYSOFT with
``timed_out`` set, so that the session answers 451 and the connection goes on.
"""

import contextvars
from time import perf_counter
from types import CoroutineType

import attr
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from qpsmtpd_tx import codes
from qpsmtpd_tx.codes import DECLINED, LOGDEBUG
from qpsmtpd_tx.hook_result import now_if_ready
from qpsmtpd_tx.interfaces import HOOK_NAMES
from qpsmtpd_tx.printable import printable


#: seconds a plugin's hook may wait when neither its line nor ``plugin_timeout`` says: longer
#: than the plugins' own timeouts (queue/qmail-queue and queue/exim-bsmtp: 300 s), which
#: answer better than a cancelled hook can
DEFAULT_HOOK_TIMEOUT = 600
#: the text of the 451 a client gets when a hook timed out
TIMEOUT_TEXT = "Timeout in processing, try again later"

#: the hooks deciding on a message, where ``plugin_errors defer`` turns a plugin's failure
#: into a DENYSOFT (450 at MAIL and RCPT, 451 at DATA, 452 after the data) instead of
#: letting the next plugin decide
DECIDING_HOOKS = frozenset(("mail", "rcpt", "data", "data_headers_end", "data_post"))
#: data_headers_end ignores a plain DENYSOFT (as qpsmtpd): there a failure is
#: DENYSOFT_DISCONNECT (421), else the message would go on unchecked
_FAILED_CODE = {"data_headers_end": codes.DENYSOFT_DISCONNECT}
#: the text of that refusal
FAILED_TEXT = "Temporary failure in processing, try again later"

#: the transaction note key of each hook's answer (see HookRegistry._record)
_NOTE_KEYS = {name: "hook_" + name for name in HOOK_NAMES}

#: the hook whose plugin code is running now (for log lines), or None
current_hook = contextvars.ContextVar("current_hook", default=None)


def _call(hook, method, transaction, args):
    token = current_hook.set(hook)
    try:
        result = method(transaction, *args)
        if type(result) is CoroutineType:
            # started here, so it runs on in this context: after an await its log lines and
            # stored results still know their hook
            result = Deferred.fromCoroutine(result)
        return result
    finally:
        current_hook.reset(token)


class UnknownHookError(Exception):
    """A plugin tried to register a hook that does not exist."""


class HookTimeout(Exception):
    """A plugin's hook did not answer within its time limit."""


@attr.s(slots=True)
class HookResult:
    """The outcome of one hook run: the deciding code, its message lines, and who decided.

    ``code`` is 0 when no plugin registered the hook (it behaves like DECLINED). Read-only
    by convention (not frozen: a frozen attrs class costs three times as much to make, and one
    is made for every hook run).
    """

    code = attr.ib()
    lines = attr.ib(factory=list)
    plugin = attr.ib(default=None)
    #: the message exactly as the plugin returned it (``*_parse`` hooks return parsed values)
    value = attr.ib(default=None)
    #: True when ``plugin`` did not answer in time (``code`` is then DENYSOFT)
    timed_out = attr.ib(default=False)

    @property
    def text(self):
        """The message lines joined by newlines ('' if none)."""
        return "\n".join(self.lines)


NO_HOOK = HookResult(0, [], None)


def _lines(message):
    if message is None:
        return []
    if isinstance(message, (list, tuple)):
        out = []
        for part in message:
            out.extend(str(part).split("\n"))
        return out
    return str(message).split("\n")


class HookRegistry:
    """Which plugin methods run for which hook, in order."""

    def __init__(self, log, log_enabled=None):
        self.use_log(log, log_enabled)
        #: hook name → its ``(plugin, method)`` pairs, in order: read it (the session looks a
        #: hook up here first: a hook nobody registered costs no call), change it through
        #: :meth:`register` only
        self.registered = {name: [] for name in HOOK_NAMES}
        #: seconds a waiting hook may take unless its plugin has ``hook_timeout``; 0: no limit
        self.default_timeout = DEFAULT_HOOK_TIMEOUT
        #: what schedules the time limits (the reactor unless a test sets a Clock)
        self.clock = None
        #: ``observe(plugin, hook, seconds)`` for each plugin's answer (--metrics), or None
        self.observe = None
        #: True (``plugin_errors defer``): a plugin failing in one of the DECIDING_HOOKS
        #: answers DENYSOFT; False (qpsmtpd's rule): it counts as DECLINED
        self.defer_on_error = False

    def use_log(self, log, log_enabled=None):
        """Log through ``log(level, message, plugin=None, transaction=None, hook=None)`` and
        ask ``log_enabled(level)`` (default: always true) whether a line at ``level`` would
        go anywhere: the debug line of every plugin answer is not even formatted otherwise.
        Kept as given (no lookup through the server at each line)."""
        self.log = log
        self.log_enabled = log_enabled or (lambda level: True)

    def register(self, hook, plugin, method, prepend=False):
        """Add ``method`` (bound, called with the transaction and the hook's arguments)."""
        if hook not in self.registered:
            raise UnknownHookError("%s: invalid hook: %s" % (getattr(plugin, "path", plugin), hook))
        entry = (plugin, method)
        if prepend:
            self.registered[hook].insert(0, entry)
        else:
            self.registered[hook].append(entry)

    def has(self, hook):
        """True if at least one plugin registered ``hook``."""
        return bool(self.registered[hook])

    def handlers(self, hook):
        """The ``(plugin, method)`` pairs registered for ``hook``, in order."""
        return list(self.registered[hook])

    def run(self, hook, transaction, *args):
        """Run ``hook``; return a Deferred firing with the deciding :class:`HookResult`."""
        result = self.call(hook, transaction, *args)
        return result if isinstance(result, Deferred) else succeed(result)

    def call(self, hook, transaction, *args):
        """Run ``hook``: the deciding :class:`HookResult`, or a Deferred of it if a plugin waits.

        The hot path: a chain of synchronous plugins costs no Deferred at all.
        """
        handlers = self.registered[hook]
        if not handlers:
            return NO_HOOK
        return self.run_handlers(hook, handlers, transaction, args)

    def run_no_respond(self, hook, transaction, *args):
        """Run a notification hook (``deny``, ``ok``, ``reset_transaction``…) for its effects only.

        Results are ignored and exceptions logged; asynchronous results are not waited for,
        but returned: the Deferreds of the plugins still working (usually none).
        """
        pending = []
        for plugin, method in self.registered[hook]:
            try:
                result = _call(hook, method, transaction, args)
                if isinstance(result, Deferred):
                    self._limit(result, hook, plugin, transaction)
                    result.addErrback(self._log_failure, hook, plugin, transaction)
                    pending.append(result)
            except Exception:
                self._log_failure(Failure(), hook, plugin, transaction)
        return pending

    def run_handlers(self, hook, handlers, transaction, args, index=0, last=None):
        """:meth:`call` for ``handlers``, the non-empty list :attr:`registered` holds for
        ``hook``, with the hook's arguments in the tuple ``args``.

        Runs the handlers from ``index``; ``last`` is the latest DECLINED result (its text is
        kept: queue answers with the last declining plugin's reason)."""
        observe = self.observe
        # the plugin whose plain DECLINED is the latest declining answer (its HookResult is
        # made only if it is the one returned: most hooks of most plugins answer so)
        declined_by = None
        # whether the debug line of each answer is logged: asked at the first plain DECLINED
        debug = None
        # set once for the whole synchronous run: for the plugins' log lines and for the
        # coroutines started here (they keep it after an await)
        token = current_hook.set(hook)
        try:
            while index < len(handlers):
                plugin, method = handlers[index]
                index += 1
                started = perf_counter() if observe is not None else None
                try:
                    # (a call without arguments to unpack costs less: data_post, queue…)
                    result = method(transaction, *args) if args else method(transaction)
                    kind = type(result)
                    if kind is CoroutineType:
                        result = Deferred.fromCoroutine(result)
                except Exception:
                    self._log_failure(Failure(), hook, plugin, transaction)
                    if self.defer_on_error and hook in DECIDING_HOOKS:
                        return self._failed_result(hook, plugin, transaction)
                    continue
                if kind is not int and kind is not tuple:
                    # an answer already there (a warm cache) needs no time limit and no callbacks
                    result = now_if_ready(result)
                    if isinstance(result, Deferred):
                        if declined_by is not None:
                            last = HookResult(DECLINED, [], declined_by)
                        return self._wait(result, hook, handlers, index, plugin, transaction,
                                          args, last, started)
                    kind = type(result)
                if started is not None:
                    observe(plugin, hook, perf_counter() - started)
                if kind is int and result == DECLINED:
                    # the most common answer (every check that passes): nothing to take apart
                    self._record(transaction, plugin, hook, DECLINED)
                    if debug is None:
                        debug = self.log_enabled(LOGDEBUG)
                    if debug:
                        self._log_answer(plugin, hook, DECLINED, [], transaction)
                    declined_by = plugin
                    continue
                decided = self._decide(result, hook, plugin, transaction)
                if decided is not None:
                    if decided.code != DECLINED:
                        return decided
                    last, declined_by = decided, None
        finally:
            current_hook.reset(token)
        if declined_by is not None:
            return HookResult(DECLINED, [], declined_by)
        return last or HookResult(DECLINED, [], None)

    def timeout_for(self, plugin):
        """Seconds ``plugin``'s hooks may wait (its ``hook_timeout``, else the default); 0: none."""
        own = getattr(plugin, "hook_timeout", None)
        return self.default_timeout if own is None else own

    def _limit(self, pending, hook, plugin, transaction):
        """Cancel ``pending`` if it has not fired within the plugin's time limit."""
        seconds = self.timeout_for(plugin)
        if not seconds:
            return

        def expired(result, timeout):
            self.log(codes.LOGERROR, "plugin %s running the %s hook timed out after %g s"
                     % (plugin.name, hook, seconds), transaction=transaction, hook=hook)
            return Failure(HookTimeout(hook))

        if self.clock is None:
            from twisted.internet import reactor
            self.clock = reactor
        pending.addTimeout(seconds, self.clock, onTimeoutCancel=expired)

    def _wait(self, pending, hook, handlers, index, plugin, transaction, args, last, started):
        def resumed(result):
            decided = self._decide(result, hook, plugin, transaction)
            if decided is not None and decided.code != codes.DECLINED:
                return decided
            return self.run_handlers(hook, handlers, transaction, args, index, decided or last)

        def failed(failure):
            if failure.check(HookTimeout):
                return HookResult(codes.DENYSOFT, [TIMEOUT_TEXT], plugin, timed_out=True)
            self._log_failure(failure, hook, plugin, transaction)
            if self.defer_on_error and hook in DECIDING_HOOKS:
                return self._failed_result(hook, plugin, transaction)
            return self.run_handlers(hook, handlers, transaction, args, index, last)

        self._limit(pending, hook, plugin, transaction)
        if started is not None:
            pending.addBoth(self._answered, plugin, hook, started)
        return pending.addCallbacks(resumed, failed)

    def _failed_result(self, hook, plugin, transaction):
        """The DENYSOFT a failed plugin answers with ``plugin_errors defer`` (DENYSOFT_DISCONNECT
        at data_headers_end; recorded and followed by the deny hook as any answer)."""
        code = _FAILED_CODE.get(hook, codes.DENYSOFT)
        return self._decide((code, FAILED_TEXT), hook, plugin, transaction)

    def _answered(self, result, plugin, hook, started):
        """A waiting plugin has answered (or timed out): its time to :attr:`observe`."""
        if self.observe is not None:
            self.observe(plugin, hook, perf_counter() - started)
        return result

    def _decide(self, result, hook, plugin, transaction):
        """The HookResult for a plugin's answer, or None if the answer is unusable."""
        kind = type(result)
        if kind is int and result in codes.CODE_NAMES:
            # a plain code (rcpt_ok's OK, a waiting plugin's DECLINED): nothing to take apart
            code, lines, message = result, [], None
        elif (kind is tuple and len(result) == 2 and type(result[1]) is str
              and result[0] in codes.CODE_NAMES):
            # the usual answer with a text, (OK, "Queued"): taken apart as _parse does
            code, message = result
            lines = message.split("\n")
        else:
            parsed = self._parse(result, hook, plugin, transaction)
            if parsed is None:
                return None
            code, lines, message = parsed
        self._record(transaction, plugin, hook, code)
        if self.log_enabled(codes.LOGDEBUG):
            self._log_answer(plugin, hook, code, lines, transaction)
        if code != codes.DECLINED and hook not in ("deny", "ok"):
            follow = "deny" if code in codes.DENY_CODES else "ok"
            if self.registered[follow]:
                self.run_no_respond(follow, transaction, plugin.name, code, "\n".join(lines))
        return HookResult(code, lines, plugin, message)

    def _parse(self, result, hook, plugin, transaction):
        """``(code, lines, message)`` of a plugin's answer other than a plain DECLINED, or
        None (logged) if it is unusable."""
        if isinstance(result, tuple) and result:
            code, rest = result[0], result[1:]
            message = rest[0] if len(rest) == 1 else (list(rest) or None)
        else:
            code, message = result, None
        if code is None:
            self.log(codes.LOGERROR, "plugin %s running the %s hook returned undef!"
                     % (plugin.name, hook), transaction=transaction, hook=hook)
            return None
        if code not in codes.CODE_NAMES:
            self.log(codes.LOGERROR, "Plugin %s, hook %s returned %r" % (plugin.name, hook, code),
                     transaction=transaction, hook=hook)
            return None
        lines = _lines(message) if isinstance(message, (str, list)) or message is None else []
        return code, lines, message

    def _log_answer(self, plugin, hook, code, lines, transaction):
        """The debug line of a plugin's answer."""
        self.log(codes.LOGDEBUG, "Plugin %s, hook %s returned %s, %s"
                 % (plugin.name, hook, codes.code_name(code), printable("\n".join(lines))),
                 transaction=transaction, hook=hook)

    @staticmethod
    def _record(transaction, plugin, hook, code):
        """Note the answer in the transaction note named after the plugin (a dict):
        ``{"hook_<hook>": {"return": code}}``, as qpsmtpd does."""
        if transaction is None:
            return
        notes = transaction.notes
        note = notes.get(plugin.name)
        if note is None:
            note = notes[plugin.name] = {}
        if isinstance(note, dict):
            note[_NOTE_KEYS[hook]] = {"return": code}

    def _log_failure(self, failure, hook, plugin, transaction):
        if failure.check(HookTimeout):
            return     # logged when it expired
        self.log(codes.LOGCRIT, "FATAL PLUGIN ERROR [%s]: %s\n%s"
                 % (plugin.name, failure.getErrorMessage(), failure.getTraceback()),
                 transaction=transaction, hook=hook)
