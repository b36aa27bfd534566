"""The hook runner's short way for the usual answer, a plain DECLINED: the same HookResult,
transaction note and debug line as the general way gives the same answer written as a tuple."""

from types import SimpleNamespace

from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.hooks import HookRegistry


def _outcome(answer):
    lines = []
    registry = HookRegistry(lambda level, message, **kw: lines.append((level, message)))
    plugin = SimpleNamespace(name="checker")
    first = SimpleNamespace(name="first")
    registry.register("data_post", first, lambda transaction: (codes.DECLINED, "first said"))
    registry.register("data_post", plugin, lambda transaction: answer)
    transaction = SimpleNamespace(notes={})
    result = registry.call("data_post", transaction)
    return ((result.code, result.lines, result.plugin, result.value, result.timed_out),
            transaction.notes, lines)


class DeclinedTests(unittest.TestCase):
    def test_int_same_as_tuple(self):
        code, notes, lines = _outcome(codes.DECLINED)
        self.assertEqual(_outcome((codes.DECLINED,)), (code, notes, lines))
        self.assertEqual(code[:2], (codes.DECLINED, []))
        self.assertEqual(code[2].name, "checker")
        self.assertEqual(lines[-1], (codes.LOGDEBUG,
                                     "Plugin checker, hook data_post returned DECLINED, "))
        self.assertEqual(notes["checker"], {"hook_data_post": {"return": codes.DECLINED}})

    def test_an_int_subclass_takes_the_general_way(self):
        class Code(int):
            pass
        code, notes, lines = _outcome(Code(codes.DECLINED))
        self.assertEqual(code[:2], (codes.DECLINED, []))
