"""small_cache: calls with short arguments are remembered, long ones computed each time and
never kept; exceptions are not remembered."""

from twisted.trial import unittest

from qpsmtpd_tx.small_cache import small_cache


def _counting(maxsize=8, most=10):
    calls = []

    @small_cache(maxsize, most)
    def length(*args):
        """The arguments' lengths."""
        calls.append(args)
        if args and args[0] == "boom":
            raise ValueError("boom")
        return tuple(len(a) for a in args)
    return length, calls


class SmallCacheTests(unittest.TestCase):
    def test_a_short_call_is_computed_once(self):
        length, calls = _counting()
        self.assertEqual(length("abc", ("de", "f")), (3, 2))
        self.assertEqual(length("abc", ("de", "f")), (3, 2))
        self.assertEqual(len(calls), 1)
        self.assertEqual(length.cache_info().currsize, 1)

    def test_a_long_call_is_computed_each_time_and_not_kept(self):
        length, calls = _counting()
        for _ in range(3):
            self.assertEqual(length("abcdef", ("ghijk",)), (6, 1))
        self.assertEqual(len(calls), 3)
        self.assertEqual(length.cache_info().currsize, 0)

    def test_characters_inside_tuples_count(self):
        length, calls = _counting()
        length(("x" * 11,))
        length((b"y" * 4, ("z" * 7,)))
        self.assertEqual(length.cache_info().currsize, 0)

    def test_an_exception_is_raised_each_time(self):
        length, calls = _counting()
        for _ in range(2):
            self.assertRaises(ValueError, length, "boom")
        self.assertEqual(len(calls), 2)

    def test_the_function_keeps_its_name_and_docstring(self):
        length, _ = _counting()
        self.assertEqual((length.__name__, length.__doc__), ("length", "The arguments' lengths."))

    def test_cache_clear(self):
        length, calls = _counting()
        length("a")
        length.cache_clear()
        length("a")
        self.assertEqual(len(calls), 2)
