"""The hook runner's bookkeeping over a chain: which declining plugin the result names,
``current_hook`` while plugins run (also in a coroutine after an await) and after the run,
and the note and debug line of each answer, whether the chain answers at once or waits."""

from types import SimpleNamespace

from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.hooks import HookRegistry, current_hook


def _chain(*answers):
    """A registry with one plugin per answer (``p0``, ``p1``…) on data_post, its log lines
    and a transaction; an answer that is callable is called with the transaction."""
    lines = []
    registry = HookRegistry(lambda level, message, **kw: lines.append((level, message)))
    for i, answer in enumerate(answers):
        plugin = SimpleNamespace(name="p%d" % i)
        method = answer if callable(answer) else (lambda transaction, answer=answer: answer)
        registry.register("data_post", plugin, method)
    return registry, lines, SimpleNamespace(notes={})


def _fields(result):
    return result.code, result.lines, result.plugin and result.plugin.name


class ChainTests(unittest.TestCase):
    def test_latest_plain_declined_names_the_result(self):
        registry, lines, txn = _chain(codes.DECLINED, codes.DECLINED)
        self.assertEqual(_fields(registry.call("data_post", txn)), (codes.DECLINED, [], "p1"))
        self.assertEqual(txn.notes, {"p0": {"hook_data_post": {"return": codes.DECLINED}},
                                     "p1": {"hook_data_post": {"return": codes.DECLINED}}})
        self.assertEqual([line for _, line in lines], [
            "Plugin p0, hook data_post returned DECLINED, ",
            "Plugin p1, hook data_post returned DECLINED, "])

    def test_declined_with_text_then_plain(self):
        registry, _, txn = _chain((codes.DECLINED, "why"), codes.DECLINED)
        self.assertEqual(_fields(registry.call("data_post", txn)), (codes.DECLINED, [], "p1"))
        registry, _, txn = _chain(codes.DECLINED, (codes.DECLINED, "why"))
        self.assertEqual(_fields(registry.call("data_post", txn)),
                         (codes.DECLINED, ["why"], "p1"))

    def test_unusable_and_failing_answers_keep_the_earlier_decliner(self):
        def broken(transaction):
            raise ValueError("broken")
        registry, _, txn = _chain(codes.DECLINED, None, broken, 12345)
        self.assertEqual(_fields(registry.call("data_post", txn)), (codes.DECLINED, [], "p0"))
        self.assertEqual(sorted(txn.notes), ["p0"])

    def test_first_decision_ends_the_chain(self):
        registry, _, txn = _chain(codes.DECLINED, (codes.DENY, "no"), codes.OK)
        self.assertEqual(_fields(registry.call("data_post", txn)), (codes.DENY, ["no"], "p1"))
        self.assertEqual(sorted(txn.notes), ["p0", "p1"])

    def test_no_plugin_answers_declined_without_a_plugin(self):
        registry, _, txn = _chain(None)
        self.assertEqual(_fields(registry.call("data_post", txn)), (codes.DECLINED, [], None))

    def test_a_failed_wait_keeps_the_plain_decliner_before_it(self):
        registry, _, txn = _chain(codes.DECLINED, lambda t: fail(ValueError("late")))
        results = []
        registry.run("data_post", txn).addCallback(results.append)
        self.assertEqual(_fields(results[0]), (codes.DECLINED, [], "p0"))

    def test_current_hook_while_running_and_after(self):
        seen = []
        registry, _, txn = _chain(lambda t: seen.append(current_hook.get()) or codes.DECLINED,
                                  lambda t: seen.append(current_hook.get()) or codes.OK)
        registry.call("data_post", txn)
        self.assertEqual(seen, ["data_post", "data_post"])
        self.assertIsNone(current_hook.get())

    def test_current_hook_after_an_await(self):
        seen, later = [], Deferred()

        async def waits(transaction):
            seen.append(current_hook.get())
            await later
            seen.append(current_hook.get())
            return codes.OK

        registry, lines, txn = _chain(codes.DECLINED, waits, codes.DENY)
        results = []
        registry.call("data_post", txn).addCallback(results.append)
        self.assertIsNone(current_hook.get())
        later.callback(None)
        self.assertEqual(seen, ["data_post", "data_post"])
        self.assertEqual(_fields(results[0]), (codes.OK, [], "p1"))
        self.assertEqual(sorted(txn.notes), ["p0", "p1"])
        self.assertEqual(lines[-1][1], "Plugin p1, hook data_post returned OK, ")

    def test_waiting_then_plain_declined(self):
        later = Deferred()
        registry, _, txn = _chain(lambda t: later, codes.DECLINED)
        results = []
        registry.call("data_post", txn).addCallback(results.append)
        later.callback((codes.DECLINED, "later"))
        self.assertEqual(_fields(results[0]), (codes.DECLINED, [], "p1"))


class _Named:
    """A hashable plugin that equals every other of its name (a plugin class may define so)."""

    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, _Named) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


class DeclinedResultTests(unittest.TestCase):
    """A plain DECLINED's short way through the runner: each run's result names the very
    plugin that declined last, and each run notes its answers."""

    def _registry(self, *plugins, hook="data_post"):
        registry = HookRegistry(lambda level, message, **kw: None)
        for plugin in plugins:
            registry.register(hook, plugin, lambda transaction, *args: codes.DECLINED)
        return registry

    def test_each_run_names_its_last_decliner_and_notes_its_answers(self):
        first, second = _Named("a"), _Named("b")
        registry = self._registry(first, second)
        registry.register("mail", first, lambda transaction, *args: codes.DECLINED)
        for _ in range(2):
            txn = SimpleNamespace(notes={})
            self.assertIs(registry.call("data_post", txn).plugin, second)
            self.assertIs(registry.call("mail", txn, "sender", {}).plugin, first)
            self.assertEqual(txn.notes, {
                "a": {"hook_data_post": {"return": codes.DECLINED},
                      "hook_mail": {"return": codes.DECLINED}},
                "b": {"hook_data_post": {"return": codes.DECLINED}}})

    def test_equal_plugins_are_told_apart(self):
        # two plugin lines of the same plugin may compare equal: the result names the very one
        one, other = _Named("same"), _Named("same")
        registry = self._registry(one)
        registry.register("mail", other, lambda transaction, *args: codes.DECLINED)
        for _ in range(2):
            self.assertIs(registry.call("data_post", None).plugin, one)
            self.assertIs(registry.call("mail", None, "sender", {}).plugin, other)

    def test_unhashable_plugins(self):
        plugin = SimpleNamespace(name="p")
        registry = self._registry(plugin)
        for _ in range(2):
            self.assertIs(registry.call("data_post", None).plugin, plugin)

    def test_arguments_reach_the_plugin(self):
        seen = []
        registry = HookRegistry(lambda level, message, **kw: None)
        registry.register("mail", SimpleNamespace(name="p"),
                          lambda transaction, *args: seen.append(args) or codes.DECLINED)
        registry.register("data_post", SimpleNamespace(name="p"),
                          lambda transaction, *args: seen.append(args) or codes.DECLINED)
        registry.call("mail", None, "sender", {"SIZE": "1"})
        registry.call("data_post", None)
        self.assertEqual(seen, [("sender", {"SIZE": "1"}), ()])

    def test_debug_lines_asked_once_per_run_follow_the_level(self):
        lines, level = [], [codes.LOGDEBUG]
        registry = HookRegistry(lambda lvl, message, **kw: lines.append(message),
                                lambda lvl: lvl <= level[0])
        for name in ("p0", "p1"):
            registry.register("data_post", SimpleNamespace(name=name),
                              lambda transaction: codes.DECLINED)
        registry.call("data_post", None)
        level[0] = codes.LOGINFO
        registry.call("data_post", None)
        self.assertEqual(lines, ["Plugin p0, hook data_post returned DECLINED, ",
                                 "Plugin p1, hook data_post returned DECLINED, "])

    def test_an_answer_already_there_is_a_plain_declined(self):
        # a Deferred that has fired (a warm cache) with DECLINED is answered as a plain one
        lines = []
        registry = HookRegistry(lambda level, message, **kw: lines.append(message))
        first, second = _Named("a"), _Named("b")
        registry.register("data_post", first, lambda transaction: succeed(codes.DECLINED))
        registry.register("data_post", second, lambda transaction: (codes.DECLINED, "why"))
        registry.register("data_post", _Named("c"), lambda transaction: succeed(codes.DECLINED))
        for _ in range(2):
            txn = SimpleNamespace(notes={})
            result = registry.call("data_post", txn)
            self.assertEqual(_fields(result), (codes.DECLINED, [], "c"))
            self.assertEqual(sorted(txn.notes), ["a", "b", "c"])
        self.assertEqual(lines[:3], ["Plugin a, hook data_post returned DECLINED, ",
                                     "Plugin b, hook data_post returned DECLINED, why",
                                     "Plugin c, hook data_post returned DECLINED, "])
