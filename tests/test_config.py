"""Tests for qpsmtpd_tx.config, qpsmtpd_tx.cdb and qpsmtpd_tx.plugins_file."""

import base64
import mmap
import os
import time
import shutil
import socket
import zlib

from twisted.trial import unittest

from qpsmtpd_tx.cdb import CDB, CDBError, cdb_hash, make_cdb, write_cdb
from qpsmtpd_tx.config import Config, ConfigError, ConfigLine
from qpsmtpd_tx.plugins_file import PluginLine, read_logging_file, read_plugins_file
from tests.support.processes import poll_until

# A cdb file made by tinycdb 0.78 (`cdb -c`), not by our writer, from these records:
#   +11,0:example.com->  +16,0:mail.example.org->  +3,5:dup->first
#   +3,6:dup->second  +3,11:key->hello world
# stored zlib-compressed and base64-encoded.
REFERENCE_CDB = zlib.decompress(base64.b64decode(
    "eNpL4mAAg6RRetDQTEC6CMofpQeeZgHSk6D84UCD0tciKB8bDZLfBOWP0qP0KD18aW4IxZBakZhbkJOql5yfKwAV"
    "yk3MzNGDiecXpTMDxViBOKW0IC2zqLgExGeD8ItTk/PzUpih5mWnVmak5uTkK5TnF+WkQE1jMMpt5/YB2pqi0M6t"
    "DaWtORgwQJ1SkL0wFvGm/u0vGIDiACyruec="))
REFERENCE_ITEMS = [
    ("example.com", ""), ("mail.example.org", ""), ("dup", "first"), ("dup", "second"),
    ("key", "hello world"),
]


def write(path, content):
    """Write ``content`` (str or bytes) to ``path``, creating parent directories."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    with open(path, "wb") as f:
        f.write(content)
    return path


class ConfigTestCase(unittest.TestCase):
    """Builds the three lookup places under a temporary directory."""

    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.config_dir = os.path.join(self.root, "etc")
        self.program_dir = os.path.join(self.root, "prog")
        self.qmail_dir = os.path.join(self.root, "qmail")
        for d in (self.config_dir, os.path.join(self.program_dir, "config"),
                  os.path.join(self.qmail_dir, "control")):
            os.makedirs(d)
        self.config = self.make_config()

    def make_config(self, **kwargs):
        """A Config over the temporary dirs, with an empty environment."""
        args = dict(config_dir=self.config_dir, program_dir=self.program_dir,
                    qmail_dir=self.qmail_dir, environ={})
        args.update(kwargs)
        return Config(**args)

    def etc(self, name, content):
        """Write ``name`` into the config dir."""
        return write(os.path.join(self.config_dir, name), content)

    def prog(self, name, content):
        """Write ``name`` into the program's config/ dir."""
        return write(os.path.join(self.program_dir, "config", name), content)

    def control(self, name, content):
        """Write ``name`` into qmail's control/ dir."""
        return write(os.path.join(self.qmail_dir, "control", name), content)


class LookupTests(ConfigTestCase):
    """The per-file lookup order and where the three places come from."""

    def test_per_file_fallback(self):
        """Each item is looked up on its own: config dir, program config/, qmail control/."""
        self.etc("a", "a from etc\n")
        self.prog("a", "a from prog\n")
        self.control("a", "a from qmail\n")
        self.prog("b", "b from prog\n")
        self.control("b", "b from qmail\n")
        self.control("c", "c from qmail\n")
        self.assertEqual(self.config.get("a"), ["a from etc"])
        self.assertEqual(self.config.get("b"), ["b from prog"])
        self.assertEqual(self.config.get("c"), ["c from qmail"])
        self.assertEqual(self.config.get("d"), [])

    def test_path_of(self):
        """path_of names the file an item comes from, None when there is none."""
        etc_a = self.etc("a", "x\n")
        self.control("a", "y\n")
        qmail_b = self.control("b", "y\n")
        self.assertEqual(self.config.path_of("a"), etc_a)
        self.assertEqual(self.config.path_of("b"), qmail_b)
        self.assertIsNone(self.config.path_of("nothing"))

    def test_empty_file_does_not_fall_back(self):
        """A file that exists but has no values hides the later places, as in qpsmtpd."""
        self.etc("a", "# only a comment\n")
        self.control("a", "from qmail\n")
        self.assertEqual(self.config.get("a"), [])

    def test_no_program_dir(self):
        """Without a program dir the lookup goes from the config dir to qmail."""
        self.prog("a", "from prog\n")
        self.control("a", "from qmail\n")
        config = self.make_config(program_dir=None)
        self.assertEqual(config.get("a"), ["from qmail"])

    def test_environment(self):
        """QPSMTPD_CONFIG and QMAIL are used when no directory is given."""
        self.etc("a", "from etc\n")
        self.control("b", "from qmail\n")
        config = Config(environ={"QPSMTPD_CONFIG": self.config_dir, "QMAIL": self.qmail_dir})
        self.assertEqual(config.get("a"), ["from etc"])
        self.assertEqual(config.get("b"), ["from qmail"])

    def test_explicit_dir_beats_environment(self):
        """An explicit config_dir (--config) wins over QPSMTPD_CONFIG."""
        self.etc("a", "from etc\n")
        other = os.path.join(self.root, "other")
        write(os.path.join(other, "a"), "from other\n")
        config = Config(config_dir=other, qmail_dir=self.qmail_dir,
                        environ={"QPSMTPD_CONFIG": self.config_dir})
        self.assertEqual(config.get("a"), ["from other"])

    def test_defaults_for_dirs(self):
        """Empty variables count as unset; qmail defaults to /var/qmail."""
        config = Config(environ={"QPSMTPD_CONFIG": "", "QMAIL": ""})
        self.assertEqual(config.search_dirs(), ["/var/qmail/control"])


class SyntaxTests(ConfigTestCase):
    """Trimming, comments and the origin of each line."""

    def test_trimming_and_comments(self):
        """Lines are trimmed; blank and '#' lines dropped; an inline '#' stays."""
        self.etc("a", "  one  \n\n   \n# comment\n   # indented comment\n"
                      "two # not a comment\n\t three\t\r\nfour")
        self.assertEqual(self.config.get("a"), ["one", "two # not a comment", "three", "four"])

    def test_inner_whitespace_kept(self):
        """Whitespace inside a line is kept as written."""
        self.etc("a", "x  \t y\n")
        self.assertEqual(self.config.get("a"), ["x  \t y"])

    def test_get_lines_origins(self):
        """get_lines gives the file and the 1-based line number of each value."""
        path = self.etc("a", "# head\n\nfirst\n  second\n")
        self.assertEqual(self.config.get_lines("a"),
                         [ConfigLine("first", path, 3), ConfigLine("second", path, 4)])

    def test_undecodable_bytes_survive(self):
        """Bytes that are not UTF-8 are kept (surrogateescape) and UTF-8 is decoded."""
        self.etc("a", b"caf\xc3\xa9\nbad\xff\n")
        lines = self.config.get("a")
        self.assertEqual(lines[0], "caf\u00e9")
        self.assertEqual(lines[1].encode("utf-8", "surrogateescape"), b"bad\xff")

    def test_directory_as_item_is_empty(self):
        """An item that is a directory reads as empty, as in qpsmtpd."""
        os.makedirs(os.path.join(self.config_dir, "a"))
        self.assertEqual(self.config.get("a"), [])


class IncludeTests(ConfigTestCase):
    """The $include directive."""

    def test_include_file(self):
        """An absolute include is spliced in place, each line keeping its origin."""
        inc = write(os.path.join(self.root, "inc"), "i1\n#c\ni2\n")
        top = self.etc("a", "before\n$include %s\nafter\n" % inc)
        self.assertEqual(self.config.get_lines("a"), [
            ConfigLine("before", top, 1), ConfigLine("i1", inc, 1), ConfigLine("i2", inc, 3),
            ConfigLine("after", top, 3)])

    def test_include_whitespace(self):
        """The directive may be indented and use tabs between the words."""
        inc = write(os.path.join(self.root, "inc"), "included\n")
        self.etc("a", "  $include\t %s  \n" % inc)
        self.assertEqual(self.config.get("a"), ["included"])

    def test_not_an_include(self):
        """'$include' alone or with two paths is an ordinary line."""
        self.etc("a", "$include\n$include x y\n$includex\n")
        self.assertEqual(self.config.get("a"), ["$include", "$include x y", "$includex"])

    def test_include_directory(self):
        """A directory includes its regular non-dot files, sorted."""
        d = os.path.join(self.root, "d")
        write(os.path.join(d, "b"), "from b\n")
        write(os.path.join(d, "a"), "from a\n")
        write(os.path.join(d, "B"), "from B\n")
        write(os.path.join(d, ".hidden"), "hidden\n")
        write(os.path.join(d, "sub", "c"), "in subdir\n")
        self.etc("a", "$include %s\nlast\n" % d)
        self.assertEqual(self.config.get("a"), ["from B", "from a", "from b", "last"])

    def test_relative_include_uses_lookup(self):
        """A relative include is found like any config item, in any of the places."""
        inc = self.control("extra", "from qmail control\n")
        self.prog("extra2", "from prog config\n")
        self.etc("a", "$include extra\n$include extra2\n")
        self.assertEqual(self.config.get("a"), ["from qmail control", "from prog config"])
        self.assertEqual(self.config.get_lines("a")[0].path, inc)

    def test_relative_include_directory(self):
        """A relative include may name a directory found through the lookup."""
        self.control("parts/one", "1\n")
        self.control("parts/two", "2\n")
        self.etc("a", "$include parts\n")
        self.assertEqual(self.config.get("a"), ["1", "2"])

    def test_missing_include(self):
        """A missing include (absolute or relative) includes nothing."""
        self.etc("a", "x\n$include %s\n$include nowhere\ny\n" % os.path.join(self.root, "nope"))
        self.assertEqual(self.config.get("a"), ["x", "y"])

    def test_nested_include(self):
        """Included files may include further files."""
        inner = write(os.path.join(self.root, "inner"), "deep\n")
        outer = write(os.path.join(self.root, "outer"), "mid\n$include %s\n" % inner)
        self.etc("a", "$include %s\ntop\n" % outer)
        self.assertEqual(self.config.get("a"), ["mid", "deep", "top"])

    def test_same_file_twice_is_not_circular(self):
        """Including one file from two places is allowed (only real cycles are errors)."""
        shared = write(os.path.join(self.root, "shared"), "s\n")
        b = write(os.path.join(self.root, "b"), "$include %s\n" % shared)
        self.etc("a", "$include %s\n$include %s\n" % (shared, b))
        self.assertEqual(self.config.get("a"), ["s", "s"])

    def test_circular_include(self):
        """A cycle is an error naming the file and line of the $include that closes it."""
        a = self.etc("a", "x\n$include b\n")
        b = self.etc("b", "# comment\ny\n$include %s\n" % a)
        error = self.assertRaises(ConfigError, self.config.get, "a")
        self.assertEqual(str(error), "%s:3: circular $include of %s" % (b, a))
        self.assertEqual((error.path, error.lineno), (b, 3))

    def test_self_include(self):
        """A file including itself is circular."""
        a = self.etc("a", "$include a\n")
        error = self.assertRaises(ConfigError, self.config.get, "a")
        self.assertEqual(str(error), "%s:1: circular $include of %s" % (a, a))

    def test_circular_through_directory(self):
        """A directory holding the including file is a cycle too."""
        d = os.path.join(self.root, "d")
        inner = write(os.path.join(d, "inner"), "$include %s\n" % d)
        self.etc("a", "$include %s\n" % d)
        error = self.assertRaises(ConfigError, self.config.get, "a")
        self.assertEqual((error.path, error.lineno), (inner, 1))
        self.assertIn("circular $include of %s" % inner, str(error))


class ValueTests(ConfigTestCase):
    """Scalars, integers, defaults, the cache and the config hook."""

    def test_get_scalar(self):
        """get_scalar gives the first line, or the default."""
        self.etc("a", "# c\nfirst\nsecond\n")
        self.assertEqual(self.config.get_scalar("a"), "first")
        self.assertIsNone(self.config.get_scalar("missing"))
        self.assertEqual(self.config.get_scalar("missing", "dflt"), "dflt")

    def test_builtin_defaults(self):
        """me is the host name and timeout 1200 when no file gives them."""
        self.assertEqual(self.config.get_scalar("me"), socket.gethostname())
        self.assertEqual(self.config.get_scalar("timeout"), "1200")
        self.assertEqual(self.config.get("timeout"), ["1200"])
        self.assertEqual(self.config.get_int("timeout", 5), 1200)

    def test_file_beats_builtin_default(self):
        """A file overrides the built-in default; one with no values does not."""
        self.etc("me", "mx.example.com\n")
        self.etc("timeout", "# nothing\n")
        self.assertEqual(self.config.get_scalar("me"), "mx.example.com")
        self.assertEqual(self.config.get_scalar("timeout"), "1200")

    def test_get_int(self):
        """get_int parses the first line; a missing item gives the default."""
        self.etc("databytes", "5000000\n")
        self.etc("neg", "-3\n")
        self.assertEqual(self.config.get_int("databytes", 0), 5000000)
        self.assertEqual(self.config.get_int("neg", 0), -3)
        self.assertEqual(self.config.get_int("missing", 7), 7)

    def test_get_int_error(self):
        """A non-numeric value is an error naming the file and line."""
        path = self.etc("databytes", "# size\n10 MB\n")
        error = self.assertRaises(ConfigError, self.config.get_int, "databytes", 0)
        self.assertTrue(str(error).startswith("%s:2: " % path), str(error))
        self.assertIn("'10 MB'", str(error))
        self.assertEqual((error.path, error.lineno), (path, 2))

    def test_get_int_rejects_python_only_syntax(self):
        """Only plain decimal digits count, not Python's 1_000."""
        self.etc("n", "1_000\n")
        self.assertRaises(ConfigError, self.config.get_int, "n", 0)

    def test_cache_and_clear(self):
        """Values are cached until clear_cache."""
        self.etc("a", "old\n")
        self.assertEqual(self.config.get("a"), ["old"])
        self.etc("a", "new\n")
        self.assertEqual(self.config.get("a"), ["old"])
        self.config.clear_cache()
        self.assertEqual(self.config.get("a"), ["new"])

    def test_returned_lists_are_copies(self):
        """Changing a returned list does not change the cache."""
        self.etc("a", "x\n")
        self.config.get("a").append("y")
        self.assertEqual(self.config.get("a"), ["x"])

    def test_config_hook(self):
        """A hook's list is used before files; None falls through to the files."""
        self.etc("a", "from file\n")
        self.etc("b", "from file\n")
        asked = []

        def hook(name):
            asked.append(name)
            return ["from hook", "two"] if name == "a" else None

        self.config.config_hook = hook
        self.assertEqual(self.config.get("a"), ["from hook", "two"])
        self.assertEqual(self.config.get("b"), ["from file"])
        self.assertEqual(self.config.get_lines("a")[1].lineno, 2)
        self.config.get("a")
        self.assertEqual(asked, ["a", "b"])

    def test_config_hook_empty_list(self):
        """A hook returning [] supplies an empty value: no file, no default."""
        self.etc("timeout", "60\n")
        self.config.config_hook = lambda name: []
        self.assertEqual(self.config.get("timeout"), [])
        self.assertEqual(self.config.get_int("timeout", 9), 9)


class CDBTests(unittest.TestCase):
    """The cdb reader and writer."""

    def test_hash(self):
        """The djb hash: 5381 for the empty key, (5381 * 33) ^ 97 for 'a'."""
        self.assertEqual(cdb_hash(b""), 5381)
        self.assertEqual(cdb_hash(b"a"), 177604)

    def test_read_reference_file(self):
        """A file made by tinycdb reads back, first value wins, duplicates via get_all."""
        db = CDB(REFERENCE_CDB)
        self.assertIn("example.com", db)
        self.assertIn("mail.example.org", db)
        self.assertNotIn("example.org", db)
        self.assertNotIn("EXAMPLE.COM", db)
        self.assertEqual(db.get("key"), "hello world")
        self.assertEqual(db["dup"], "first")
        self.assertEqual(db.get_all("dup"), ["first", "second"])
        self.assertIsNone(db.get("nope"))
        self.assertRaises(KeyError, lambda: db["nope"])
        self.assertEqual(list(db), ["example.com", "mail.example.org", "dup", "key"])
        self.assertEqual(len(db), 4)

    def test_bytes_keys(self):
        """Keys may be given as bytes too."""
        self.assertEqual(CDB(REFERENCE_CDB).get(b"key"), "hello world")

    def test_writer_matches_reference(self):
        """Our writer makes the same bytes as tinycdb."""
        self.assertEqual(make_cdb(REFERENCE_ITEMS), REFERENCE_CDB)

    def test_many_keys(self):
        """Thousands of keys (so hash slots collide and probes wrap) all read back."""
        items = [("host%d.example.com" % n, str(n)) for n in range(3000)]
        path = self.mktemp()
        write_cdb(path, items)
        db = CDB.open(path)
        for key, value in items:
            self.assertEqual(db.get(key), value)
        self.assertNotIn("host3000.example.com", db)
        self.assertEqual(len(db), 3000)

    def test_open_maps_the_file_and_answers_as_the_bytes_do(self):
        """CDB.open maps the file (no read of the whole file in the reactor thread); every
        lookup gives what the same bytes in memory give; a file replaced by rename keeps
        the old answers until reopened; a short or empty file is refused."""
        path = self.mktemp()
        write(path, REFERENCE_CDB)
        mapped, in_memory = CDB.open(path), CDB(REFERENCE_CDB)
        self.assertIsInstance(mapped._data, mmap.mmap)
        for key in ["example.com", "mail.example.org", "dup", "key", "nope", "", "EXAMPLE.COM"]:
            self.assertEqual(mapped.get_all(key), in_memory.get_all(key), key)
            self.assertEqual(key in mapped, key in in_memory, key)
        self.assertEqual(list(mapped), list(in_memory))
        self.assertEqual(len(mapped), len(in_memory))
        write_cdb(path, [("new.example", "")])
        self.assertEqual(mapped.get("key"), "hello world")
        self.assertEqual(list(CDB.open(path)), ["new.example"])
        for content in (b"", b"\0" * 100, REFERENCE_CDB[:-8]):
            write(path, content)
            self.assertRaises(CDBError, CDB.open, path)

    def test_empty(self):
        """An empty database has no keys."""
        db = CDB(make_cdb([]))
        self.assertEqual(len(make_cdb([])), 2048)
        self.assertNotIn("x", db)
        self.assertEqual(list(db), [])

    def test_corrupt(self):
        """Truncated data is refused."""
        self.assertRaises(CDBError, CDB, b"\0" * 100)
        self.assertRaises(CDBError, CDB, REFERENCE_CDB[:-8])


class MapTests(ConfigTestCase):
    """get_map: a cdb file, else the plain file's lines."""

    def test_cdb_map(self):
        """<name>.cdb is read when it exists in the lookup places."""
        write(os.path.join(self.qmail_dir, "control", "morercpthosts.cdb"), REFERENCE_CDB)
        hosts = self.config.get_map("morercpthosts")
        self.assertIn("example.com", hosts)
        self.assertNotIn("other.example.com", hosts)
        self.assertEqual(hosts.get("key"), "hello world")

    def test_cdb_map_reread_when_changed(self):
        """A changed cdb file is seen without clear_cache, as qpsmtpd never caches maps."""
        path = os.path.join(self.config_dir, "morercpthosts.cdb")
        write_cdb(path, [("old.example", "")])
        self.assertIn("old.example", self.config.get_map("morercpthosts"))
        write_cdb(path, [("new.example", ""), ("more.example", "")])
        hosts = self.config.get_map("morercpthosts")
        self.assertIn("new.example", hosts)
        self.assertNotIn("old.example", hosts)

    def test_cdb_map_created_later_is_seen_after_the_recheck_time(self):
        """A missing cdb is not looked for on every lookup (a stat per config directory per
        connection), but a cdb created later is used after NO_CDB_RECHECK seconds."""
        from qpsmtpd_tx.config import NO_CDB_RECHECK
        self.etc("morercpthosts", "plain.example\n")
        started = time.monotonic()
        self.assertEqual(dict(self.config.get_map("morercpthosts")), {"plain.example": ""})
        write_cdb(os.path.join(self.config_dir, "morercpthosts.cdb"), [("cdb.example", "")])
        hosts = dict(self.config.get_map("morercpthosts"))
        if hosts != {"plain.example": ""}:
            # the default time (a second), not a shorter one: a loaded machine can stall longer
            # than a few tenths between the two lookups
            self.assertLess(time.monotonic() - started, NO_CDB_RECHECK,
                            "too slow for this test: the recheck time had passed")
        self.assertEqual(hosts, {"plain.example": ""})
        self.assertTrue(poll_until(lambda: "cdb.example" in self.config.get_map("morercpthosts"),
                                   NO_CDB_RECHECK + 10), "the cdb was never used")

    def test_plain_map(self):
        """Without a cdb the plain file's lines are the keys, with value ''."""
        self.etc("morercpthosts", "# hosts\nExample.COM\nother.example\n")
        hosts = self.config.get_map("morercpthosts")
        self.assertEqual(hosts, {"Example.COM": "", "other.example": ""})
        self.assertIn("Example.COM", hosts)
        self.assertNotIn("example.com", hosts)

    def test_missing_map(self):
        """No file at all gives an empty map."""
        self.assertEqual(dict(self.config.get_map("morercpthosts")), {})

    def test_corrupt_cdb(self):
        """A broken cdb file is an error naming it."""
        path = self.etc("morercpthosts.cdb", b"short")
        error = self.assertRaises(ConfigError, self.config.get_map, "morercpthosts")
        self.assertEqual(error.path, path)
        self.assertTrue(str(error).startswith(path + ": "), str(error))


class PluginsFileTests(ConfigTestCase):
    """read_plugins_file and read_logging_file."""

    def test_parse(self):
        """Names, instances, arguments and origins."""
        path = self.etc("plugins", "# comment\n"
                                   "queue/qmail-queue /var/qmail/bin/qmail-queue\n"
                                   "spamassassin  reject 12\tmunge_subject_threshold 8\n"
                                   "relay:1 only 1\n"
                                   "rcpt_ok\n")
        self.assertEqual(read_plugins_file(self.config), [
            PluginLine("queue/qmail-queue", None, ("/var/qmail/bin/qmail-queue",), path, 2),
            PluginLine("spamassassin", None, ("reject", "12", "munge_subject_threshold", "8"),
                       path, 3),
            PluginLine("relay", "1", ("only", "1"), path, 4),
            PluginLine("rcpt_ok", None, (), path, 5),
        ])

    def test_colon_without_digits(self):
        """Only ':' followed by digits at the end is an instance number."""
        self.etc("plugins", "odd:name\nodd:1x\na:b:2\n")
        parsed = [(p.name, p.instance) for p in read_plugins_file(self.config)]
        self.assertEqual(parsed, [("odd:name", None), ("odd:1x", None), ("a:b", "2")])

    def test_tab_accepted(self):
        """A TAB separates words (qpsmtpd would refuse it)."""
        self.etc("plugins", "dnsbl\treject\t1\n")
        [line] = read_plugins_file(self.config)
        self.assertEqual((line.name, line.args), ("dnsbl", ("reject", "1")))

    def test_non_ascii_rejected(self):
        """A byte outside printable ASCII is an error naming the file and line."""
        path = self.etc("plugins", b"rcpt_ok\n# fine: \xc3\xa9\ndnsbl caf\xc3\xa9\n")
        error = self.assertRaises(ConfigError, read_plugins_file, self.config)
        self.assertEqual((error.path, error.lineno), (path, 3))
        self.assertTrue(str(error).startswith("%s:3: byte 0xc3 at column 10" % path),
                        str(error))

    def test_control_character_rejected(self):
        """Control characters other than TAB are refused, undecodable bytes too."""
        path = self.etc("plugins", b"ok\nbad\x01\n")
        error = self.assertRaises(ConfigError, read_plugins_file, self.config)
        self.assertIn("%s:2: byte 0x01" % path, str(error))
        self.etc("plugins", b"bad\xff\n")
        self.config.clear_cache()
        error = self.assertRaises(ConfigError, read_plugins_file, self.config)
        self.assertIn(":1: byte 0xff", str(error))

    def test_package_plugin(self):
        """Pkg::Name is kept whole; an instance number is not allowed with it."""
        self.etc("plugins", "My::Plugin arg\n")
        [line] = read_plugins_file(self.config)
        self.assertEqual((line.name, line.instance, line.args), ("My::Plugin", None, ("arg",)))
        path = self.etc("plugins", "rcpt_ok\nMy::Plugin:2 arg\n")
        self.config.clear_cache()
        error = self.assertRaises(ConfigError, read_plugins_file, self.config)
        self.assertEqual((error.path, error.lineno), (path, 2))

    def test_include_in_plugins(self):
        """$include works in plugins, lines keep their own origin."""
        inc = self.etc("queue-method", "queue/maildir /var/spool/Maildir\n")
        self.etc("plugins", "rcpt_ok\n$include queue-method\n")
        lines = read_plugins_file(self.config)
        self.assertEqual([p.name for p in lines], ["rcpt_ok", "queue/maildir"])
        self.assertEqual((lines[1].path, lines[1].lineno), (inc, 1))

    def test_logging_file(self):
        """read_logging_file parses the 'logging' item the same way."""
        path = self.etc("logging", "logging/file loglevel LOGINFO /var/log/q.log\nlogging/warn:1 7\n")
        self.assertEqual(read_logging_file(self.config), [
            PluginLine("logging/file", None, ("loglevel", "LOGINFO", "/var/log/q.log"), path, 1),
            PluginLine("logging/warn", "1", ("7",), path, 2),
        ])

    def test_no_plugins_file(self):
        """No plugins file means no plugins."""
        self.assertEqual(read_plugins_file(self.config), [])


DEBIAN_PLUGINS = """\
#
# Example configuration file for plugins
#

# enable this to get configuration via http; see perldoc
# plugins/http_config for details.
#   http_config http://localhost/~smtpd/config/      http://www.example.com/smtp.pl?config=

check_earlytalker action log
check_relay

rhsbl
dnsbl

check_spamhelo
check_badmailfrom
check_badrcptto

check_loop
rcpt_ok

# queue method, set by debconf
$include {etc}/debian-queue-method
"""


class DebianConfigTests(ConfigTestCase):
    """A config dir laid out like Debian's /etc/qpsmtpd."""

    def build_debian_dir(self):
        """Write a Debian-like config dir (absolute includes point into it)."""
        etc = self.config_dir
        self.etc("plugins", DEBIAN_PLUGINS.format(etc=etc))
        self.etc("debian-queue-method", "# set by debconf\n")
        self.etc("rcpthosts", "# rcpthosts\n$include %s/debian-rcpthosts\n" % etc)
        self.etc("debian-rcpthosts", "# by debconf\nunset\n")
        self.etc("logging", "\nlogging/file loglevel LOGINFO /var/log/qpsmtpd/qpsmtpd.log\n\n")
        self.etc("loglevel", "# 6 = LOGINFO\n6\n")
        self.etc("plugin_dirs", "/usr/share/qpsmtpd/plugins\n")
        self.etc("relayclients", "# local\n127.0.0.1\n")
        self.etc("spool_dir", "# where\n/var/spool/qpsmtpd\n")

    def test_debian_layout(self):
        """The Debian files read as qpsmtpd reads them."""
        self.build_debian_dir()
        self.control("me", "qmail.example\n")
        self.assertEqual([p.name for p in read_plugins_file(self.config)], [
            "check_earlytalker", "check_relay", "rhsbl", "dnsbl", "check_spamhelo",
            "check_badmailfrom", "check_badrcptto", "check_loop", "rcpt_ok"])
        self.assertEqual(read_plugins_file(self.config)[0].args, ("action", "log"))
        self.assertEqual(self.config.get("rcpthosts"), ["unset"])
        self.assertEqual(self.config.get_int("loglevel", 4), 6)
        self.assertEqual(self.config.get("plugin_dirs"), ["/usr/share/qpsmtpd/plugins"])
        self.assertEqual(self.config.get_scalar("spool_dir"), "/var/spool/qpsmtpd")
        self.assertEqual(self.config.get_scalar("me"), "qmail.example")
        self.assertEqual(read_logging_file(self.config)[0].args,
                         ("loglevel", "LOGINFO", "/var/log/qpsmtpd/qpsmtpd.log"))

    def test_debian_queue_method_included(self):
        """A queue method chosen through debconf comes in through the include."""
        self.build_debian_dir()
        self.etc("debian-queue-method", "queue/smtp-forward localhost\n")
        plugins = read_plugins_file(self.config)
        self.assertEqual((plugins[-1].name, plugins[-1].args),
                         ("queue/smtp-forward", ("localhost",)))

    def test_copy_of_installed_etc_qpsmtpd(self):
        """A copy of this machine's /etc/qpsmtpd, if there is one, parses."""
        if not os.path.isfile("/etc/qpsmtpd/plugins"):
            raise unittest.SkipTest("no /etc/qpsmtpd here")
        copy = os.path.join(self.root, "etc-copy")
        shutil.copytree("/etc/qpsmtpd", copy)
        config = Config(copy, qmail_dir=self.qmail_dir, environ={})
        plugins = read_plugins_file(config)
        self.assertTrue(plugins)
        self.assertTrue(all(p.path.startswith(("/etc/qpsmtpd/", copy)) for p in plugins))
        self.assertEqual(config.path_of("plugins"), os.path.join(copy, "plugins"))
        self.assertIsInstance(config.get_int("loglevel", 4), int)
