"""The aliases plugin: file format, errors, precedence, alias targets, reload, and the
per-recipient policy show case of issue 5 over a real socket (the other sessions run with the
in-memory client, ``MemoryClient``)."""

import os

from twisted.internet.task import Clock
from twisted.trial import unittest

from qpsmtpd_tx import codes
from qpsmtpd_tx.address import Address
from qpsmtpd_tx.loader import find_plugin_file, load_plugin_module
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.policy import expand_alias
from qpsmtpd_tx.server import StartupError
from tests.support.harness import MemoryClient, capture_log, codes_of, loaded_plugin, make_server
from tests.support.processes import CHECKOUT
from tests.support.showcase import assert_three_thresholds

aliases = load_plugin_module(find_plugin_file("aliases", default_plugin_dirs()))
MESSAGE = b"Subject: x\r\n\r\nbody\r\n.\r\n"


def parse(text):
    """The table parsed from ``text`` (file name ``A``)."""
    return aliases.parse_aliases(text, "A")[0]


def lookup(table, address):
    return table.lookup(Address.parse(address))


def write(testcase, text, name="aliases"):
    """Write ``text`` into a new file; return its absolute path."""
    directory = os.path.abspath(testcase.mktemp())
    os.makedirs(directory)
    path = os.path.join(directory, name)
    with open(path, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
    return path


def plugin_of(server):
    return loaded_plugin(server, "aliases")


class ParsingTests(unittest.TestCase):
    def test_pattern_kinds(self):
        table = parse("*  k=default\n"
                      "@Example.COM  k=domain\n"
                      "@.Sub.Example.com  k=subdomains\n"
                      "Alice@Example.com  k=exact\n"
                      "postmaster  k=bare\n"
                      "@[192.0.2.1]  k=literal\n")
        self.assertEqual(table.default, ((("k", "default"),), ()))
        self.assertEqual(set(table.domains), {"example.com", "[192.0.2.1]"})
        self.assertEqual(set(table.subdomains), {"sub.example.com"})
        self.assertEqual(set(table.exact), {"alice@example.com", "postmaster"})
        self.assertEqual(len(table), 6)
        self.assertEqual(lookup(table, "<ALICE@example.com>")[0], {"k": "exact"})
        self.assertEqual(lookup(table, "<bob@example.com>")[0], {"k": "domain"})
        self.assertEqual(lookup(table, "<bob@a.sub.example.com>")[0], {"k": "subdomains"})
        self.assertEqual(lookup(table, "<bob@sub.example.com>")[0], {"k": "default"})
        self.assertEqual(lookup(table, "<Postmaster>")[0], {"k": "bare"})
        self.assertEqual(lookup(table, "<x@[192.0.2.1]>")[0], {"k": "literal"})
        self.assertEqual(lookup(table, "<x@elsewhere.example>")[0], {"k": "default"})

    def test_settings(self):
        table = parse("a@example.com  one=1 two.x-y=a=b  Three_= empty=\n")
        self.assertEqual(table.exact["a@example.com"][0],
                         (("one", "1"), ("two.x-y", "a=b"), ("Three_", None), ("empty", None)))

    def test_targets_commas_spaces_and_domains(self):
        table = parse("a@example.com  k=v  ->  b@example.com,c@example.net , d@example.org,\n"
                      "@old.example -> @New.Example\n")
        self.assertEqual(table.exact["a@example.com"],
                         ((("k", "v"),), ("b@example.com", "c@example.net", "d@example.org")))
        self.assertEqual(table.domains["old.example"], ((), ("@new.example",)))
        self.assertEqual(lookup(table, "<Joe@old.example>")[1], ["Joe@new.example"])

    def test_quoted_local_parts_are_written_back_quoted(self):
        table = parse('"a..b"@example.com k=1 -> "c..d"@example.com\n')
        self.assertEqual(table.exact['"a..b"@example.com'],
                         ((("k", "1"),), ('"c..d"@example.com',)))
        self.assertEqual(lookup(table, '<"a..b"@example.com>')[1], ['"c..d"@example.com'])

    def test_comments_and_blank_lines(self):
        table = parse("# a comment\n"
                      "\n"
                      "   # an indented comment\n"
                      "a@example.com  k=v#kept  # a comment after a word\n"
                      "b#c@example.com  k=1\t# after a tab\n")
        self.assertEqual(table.exact["a@example.com"][0], (("k", "v#kept"),))
        self.assertEqual(table.exact["b#c@example.com"][0], (("k", "1"),))
        self.assertEqual(len(table), 2)

    def test_continuation_lines(self):
        table = parse("team@example.com  k=1\n"
                      "    j=2\n"
                      "# a comment inside the entry\n"
                      "\n"
                      "\t-> a@example.com,\n"
                      "       b@example.com\n"
                      "next@example.com k=3\n")
        self.assertEqual(table.exact["team@example.com"],
                         ((("k", "1"), ("j", "2")), ("a@example.com", "b@example.com")))
        self.assertEqual(table.exact["next@example.com"], ((("k", "3"),), ()))

    def test_crlf_line_ends(self):
        table = parse("a@example.com k=1\r\n  -> b@example.com\r\n\r\n")
        self.assertEqual(table.exact["a@example.com"], ((("k", "1"),), ("b@example.com",)))

    def test_pattern_alone(self):
        table = parse("a@example.com\n")
        self.assertEqual(table.exact["a@example.com"], ((), ()))

    def test_fast_path_agrees_with_address_parse(self):
        parser = aliases._Parser("A")
        for word in ("a@example.com", "First.Last+tag@Mail.Example.COM", "x=y@b.c",
                     "o'neil@example.ie", "a" * 64 + "@example.com", "a..b@example.com",
                     "a.@example.com", '"q u"@example.com'):
            address = Address.parse(word)
            self.assertEqual(parser.pattern(1, word), ("exact", address.address.lower()), word)
            self.assertEqual(parser.target(1, word), address.address, word)

    def test_identical_entries_are_shared(self):
        table = parse("a@example.com k=1\nb@example.com k=1\n@example.org k=1\n")
        self.assertIs(table.exact["a@example.com"], table.exact["b@example.com"])
        self.assertIs(table.exact["a@example.com"], table.domains["example.org"])

    def test_target_with_targets_of_its_own_is_a_warning(self):
        table, warnings = aliases.parse_aliases(
            "a@example.com -> b@example.com\nb@example.com -> c@example.com\n", "A")
        self.assertEqual(warnings, ["A:1: target b@example.com of a@example.com has targets of "
                                    "its own, which are not used"])


class DocumentedExamplesTests(unittest.TestCase):
    """The examples in the plugin's docstring and in the README parse as they say."""

    def example(self, text, intro, indent):
        block = text.split(intro)[1].split("\n\n")[0]
        return parse("\n".join(line[indent:] for line in block.split("\n")))

    def check(self, table):
        self.assertEqual(lookup(table, "<alice@example.com>")[0],
                         {"spamassassin_reject_threshold": "3", "virus_action": "reject"})
        self.assertEqual(lookup(table, "<bob@example.com>")[0],
                         {"spamassassin_reject_threshold": "6"})
        self.assertEqual(lookup(table, "<x@a.example.com>")[0],
                         {"spamassassin_reject_threshold": "8"})
        self.assertEqual(lookup(table, "<team@example.com>")[1],
                         ["alice@example.com", "bob@example.com", "carol@example.net"])
        self.assertEqual(lookup(table, "<x@old-name.example>")[1], ["x@example.com"])

    def test_docstring_example(self):
        self.check(self.example(aliases.__doc__, "and the alias targets::\n\n", 4))

    def test_readme_example(self):
        readme = os.path.join(CHECKOUT, "README.md")
        with open(readme) as f:
            text = f.read()
        self.check(self.example(text, "then optionally `->` and alias targets:\n\n", 4))


class ErrorTests(unittest.TestCase):
    """Every malformed line is refused, naming the file and the line."""

    CASES = [
        ("ok@example.com k=1\nnot-an-address k=v\n", 2, "'not-an-address': not an address"),
        ("<a@example.com> k=1\n", 1, "not an address, @domain, @.domain or *"),
        ("@bad_domain k=v\n", 1, "'@bad_domain': not a domain after '@'"),
        ("@.x..example k=v\n", 1, "'@.x..example': not a domain after '@.'"),
        ("a@example.com k\n", 1, "'k': expected key=value or '->'"),
        ("a@example.com b@example.com\n", 1, "expected key=value or '->' (targets go after '->')"),
        ("a@example.com 1k=v\n", 1, "bad setting name '1k'"),
        ("a@example.com =v\n", 1, "bad setting name ''"),
        ("a@example.com k=1 k=2\n", 1, "setting k given twice"),
        ("a@example.com alias_targets=b@example.com\n", 1, "set by the aliases plugin itself"),
        ("a@example.com original_recipient=x\n", 1, "set by the aliases plugin itself"),
        ("a@example.com ->\n", 1, "'->' without targets"),
        ("a@example.com k=1\n\n  ->  ,\n", 3, "'->' without targets"),
        ("a@example.com -> nobody\n", 1, "target 'nobody': not an address user@domain or @domain"),
        ("a@example.com -> postmaster\n", 1, "target 'postmaster': not an address"),
        ("a@example.com -> b@example.com k=v\n", 1, "target 'k=v': not an address user@domain or "
                                                    "@domain (settings go before '->')"),
        ("a@example.com -> @bad_domain\n", 1, "target '@bad_domain': not a domain after '@'"),
        ("a@example.com\n  -> b@example.com\n  -> c@example.com\n", 3,
         "target '->': not an address"),
        ("* k=1\n  -> a@example.com\n", 1, "'*' cannot have targets"),
        ("  k=v\na@example.com\n", 1, "continuation line without an entry above it"),
        ("a@example.com k=1\n# x\nA@EXAMPLE.com k=2\n", 3,
         "a@example.com is already listed on line 1"),
        ("@example.com k=1\n@Example.com k=2\n", 2, "@example.com is already listed on line 1"),
        ("@.example.com k=1\n@.example.com k=2\n", 2, "@.example.com is already listed on line 1"),
        ("* k=1\n* k=2\n", 2, "* is already listed on line 1"),
    ]

    def test_malformed_lines(self):
        for text, lineno, message in self.CASES:
            with self.assertRaises(aliases.AliasesError, msg=text) as caught:
                aliases.parse_aliases(text, "/etc/aliases")
            self.assertIn("/etc/aliases:%d: " % lineno, str(caught.exception), text)
            self.assertIn(message, str(caught.exception), text)
            self.assertEqual(caught.exception.lineno, lineno)

    def test_invalid_utf8_names_the_line(self):
        path = write(self, b"a@example.com k=1\nb@example.com k=\xff\n")
        with self.assertRaises(aliases.AliasesError) as caught:
            aliases.read_aliases(path)
        self.assertEqual(str(caught.exception), "%s:2: not valid UTF-8" % path)

    def test_duplicate_in_a_file_names_both_lines(self):
        path = write(self, "# x\na@example.com k=1\nb@example.com k=1\nA@example.com k=2\n")
        with self.assertRaises(aliases.AliasesError) as caught:
            aliases.read_aliases(path)
        self.assertEqual(str(caught.exception),
                         "%s:4: a@example.com is already listed on line 2" % path)

    def test_missing_file(self):
        path = os.path.abspath("no-such-aliases")
        with self.assertRaises(aliases.AliasesError) as caught:
            aliases.read_aliases(path)
        self.assertIn("%s: cannot read: " % path, str(caught.exception))

    def test_startup_error_names_plugins_line_and_aliases_line(self):
        path = write(self, "a@example.com k=1\nb@example.com k\n")
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["rcpt_ok", "aliases %s" % path])
        message = str(caught.exception)
        self.assertIn("plugins:2: plugin aliases: %s:2: 'k': expected key=value" % path, message)

    def test_startup_error_for_missing_file(self):
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["aliases /nonexistent/aliases", "rcpt_ok"])
        self.assertIn("plugins:1: plugin aliases: /nonexistent/aliases: cannot read",
                      str(caught.exception))


class ArgumentTests(unittest.TestCase):
    def test_default_is_the_config_item(self):
        server = make_server(self, ["aliases", "rcpt_ok"], {"aliases": "a@example.com k=1"})
        plugin = plugin_of(server)
        self.assertEqual(plugin.aliases_file, server.config.path_of("aliases"))
        self.assertEqual(plugin.check_interval, 5.0)

    def test_named_config_item(self):
        server = make_server(self, ["aliases aliases.shop check_interval 0.5", "rcpt_ok"],
                             {"aliases.shop": "a@example.com k=1"})
        plugin = plugin_of(server)
        self.assertTrue(plugin.aliases_file.endswith("/aliases.shop"))
        self.assertEqual(plugin.check_interval, 0.5)

    def test_relative_path_is_relative_to_the_current_directory(self):
        os.makedirs("rel")
        with open(os.path.join("rel", "aliases"), "w") as f:
            f.write("a@example.com k=1\n")
        plugin = plugin_of(make_server(self, ["aliases rel/aliases", "rcpt_ok"]))
        self.assertEqual(plugin.aliases_file, os.path.abspath("rel/aliases"))

    def test_bad_arguments(self):
        for line, message in [
            ("aliases no_such_item",
             "aliases file: config item 'no_such_item' not found (looked in "),
            ("aliases aliases check_interval soon", "check_interval must be a number"),
            ("aliases aliases check_interval -1", "check_interval must be a number"),
            ("aliases aliases extra", "unknown argument 'aliases'"),
            ("aliases aliases colour blue", "unknown argument 'colour'"),
        ]:
            with self.assertRaises(StartupError, msg=line) as caught:
                make_server(self, [line, "rcpt_ok"], {"aliases": "a@example.com k=1"})
            self.assertIn("plugins:1: plugin aliases: " + message, str(caught.exception))


class PrecedenceTests(unittest.TestCase):
    table = parse("*                     a=star b=star c=star d=star e=star u=star\n"
                  "@.example.com         b=parent\n"
                  "@.sub.example.com     c=nearer\n"
                  "@x.sub.example.com    d=domain u=\n"
                  "me@x.sub.example.com  e=exact\n"
                  "@catch.example        a=catch -> all@example.com\n"
                  "keep@catch.example    e=kept\n"
                  "@redirect.example     -> @example.com\n"
                  "keep@redirect.example\n")

    def test_settings_merge_from_least_to_most_specific(self):
        notes, targets, patterns = lookup(self.table, "<me@x.sub.example.com>")
        self.assertEqual(notes, {"a": "star", "b": "parent", "c": "nearer", "d": "domain",
                                 "e": "exact"})
        self.assertEqual(patterns, ["*", "@.example.com", "@.sub.example.com",
                                    "@x.sub.example.com", "me@x.sub.example.com"])
        self.assertEqual(targets, [])

    def test_empty_value_removes_an_inherited_setting(self):
        self.assertNotIn("u", lookup(self.table, "<you@x.sub.example.com>")[0])
        self.assertEqual(lookup(self.table, "<you@y.sub.example.com>")[0]["u"], "star")

    def test_subdomain_pattern_does_not_match_the_domain_itself(self):
        notes, _, patterns = lookup(self.table, "<you@example.com>")
        self.assertEqual(patterns, ["*"])
        self.assertEqual(notes["b"], "star")

    def test_targets_come_from_the_most_specific_entry_only(self):
        self.assertEqual(lookup(self.table, "<anyone@catch.example>")[:2],
                         ({"a": "catch", "b": "star", "c": "star", "d": "star", "e": "star",
                           "u": "star"}, ["all@example.com"]))
        notes, targets, _ = lookup(self.table, "<keep@catch.example>")
        self.assertEqual(targets, [])                      # an exception to the catch-all
        self.assertEqual((notes["a"], notes["e"]), ("catch", "kept"))  # settings still merge
        self.assertEqual(lookup(self.table, "<Joe@redirect.example>")[1], ["Joe@example.com"])
        self.assertEqual(lookup(self.table, "<keep@redirect.example>")[1], [])

    def test_no_match(self):
        table = parse("@example.com k=1\n")
        self.assertEqual(lookup(table, "<a@example.net>"), ({}, [], []))


class ExpandAliasTests(unittest.TestCase):
    """The core side of alias targets: policy.expand_alias."""

    def rcpt(self, **notes):
        address = Address.parse("<team@example.com>")
        address.notes.update(notes)
        return address

    def test_without_targets_the_recipient_stays(self):
        rcpt = self.rcpt(k="1")
        self.assertEqual(expand_alias(rcpt), ([rcpt], []))

    def test_targets_get_copies_of_the_notes(self):
        rcpt = self.rcpt(k="1", alias_targets=["a@example.com", "B@Example.net", "a@EXAMPLE.com"])
        targets, invalid = expand_alias(rcpt)
        self.assertEqual([t.address for t in targets], ["a@example.com", "B@Example.net"])
        self.assertEqual(invalid, [])
        for target in targets:
            self.assertEqual(target.notes, {"k": "1", "original_recipient": "team@example.com"})
        targets[0].notes["k"] = "2"
        self.assertEqual(targets[1].notes["k"], "1")
        self.assertIn("alias_targets", rcpt.notes)   # the recipient itself is left alone

    def test_string_and_address_targets(self):
        target = Address.parse("<c@example.com>")
        target.notes["own"] = "yes"
        rcpt = self.rcpt(alias_targets="a@example.com, b@example.com")
        self.assertEqual([t.address for t in expand_alias(rcpt)[0]],
                         ["a@example.com", "b@example.com"])
        targets, _ = expand_alias(self.rcpt(alias_targets=[target], original_recipient="x@y.z"))
        self.assertEqual(targets[0].notes, {"own": "yes", "original_recipient": "x@y.z"})
        self.assertIsNot(targets[0], target)

    def test_invalid_targets_are_skipped(self):
        targets, invalid = expand_alias(self.rcpt(alias_targets=["nobody", "a@example.com", "<>"]))
        self.assertEqual([t.address for t in targets], ["a@example.com"])
        self.assertEqual(invalid, ["nobody", "<>"])
        rcpt = self.rcpt(alias_targets=["nobody"])
        self.assertEqual(expand_alias(rcpt), ([rcpt], ["nobody"]))


ALIASES = """\
*                   test_threshold=9
@example.com        test_action=reject
alice@example.com   test_threshold=3
sales@example.com   -> bob@example.net
team@example.com    test_threshold=4 -> alice@example.com, bob@example.net,
                       carol@example.com
"""


class SessionTests(unittest.TestCase):
    """Notes and targets inside an SMTP session (in memory)."""

    def client(self, text=ALIASES, plugins=("threshold_filter", "rcpt_recorder", "rcpt_ok",
                                            "scripted queue OK"), files=None):
        self.path = write(self, text)
        self.server = make_server(self, ["aliases %s" % self.path] + list(plugins),
                                  dict(files or {}, recipient_policy="group"))
        client = MemoryClient(self.server)
        client.command("EHLO c.example")
        client.command("MAIL FROM:<s@sender.example>")
        return client

    def send(self, client):
        self.assertEqual(codes_of(client.command("DATA")), [354])
        self.assertEqual(codes_of(client.send(MESSAGE)), [250])
        return client.session.connection.notes

    def test_notes_travel_to_data_post_and_queue(self):
        client = self.client()
        self.assertEqual(codes_of(client.command("RCPT TO:<alice@example.com>")), [250])
        notes = self.send(client)
        self.assertEqual(notes["threshold_seen"], [(3.0, "reject")])
        expected = [("alice@example.com", {"test_threshold": "3", "test_action": "reject"})]
        self.assertEqual(notes["recorded_recipients"],
                         [("data_post", expected), ("queue", expected)])

    def test_unmatched_recipient_gets_the_catch_all(self):
        client = self.client(files={"relayclients": "192.0.2.1"}, plugins=(
            "relay", "threshold_filter", "rcpt_recorder", "rcpt_ok", "scripted queue OK"))
        client.command("RCPT TO:<someone@elsewhere.example>")
        self.assertEqual(self.send(client)["threshold_seen"], [(9.0, "tag")])

    def test_one_target(self):
        client = self.client()
        # relaying is decided on the address the client sent: example.net is not local
        self.assertEqual(client.command("RCPT TO:<sales@example.com>"),
                         "250 <sales@example.com>, recipient ok\r\n")
        self.assertEqual(codes_of(client.command("RCPT TO:<bob@example.net>")), [550])
        notes = self.send(client)
        self.assertEqual(notes["recorded_recipients"][1], ("queue", [
            ("bob@example.net", {"test_threshold": "9", "test_action": "reject",
                                 "original_recipient": "sales@example.com"})]))

    def test_several_targets_without_duplicates(self):
        client = self.client(ALIASES.replace("alice@example.com   test_threshold=3",
                                             "alice@example.com   test_threshold=4"))
        self.assertEqual(codes_of(client.command("RCPT TO:<alice@example.com>")), [250])
        self.assertEqual(client.command("RCPT TO:<team@example.com>"),
                         "250 <team@example.com>, recipient ok\r\n")
        notes = self.send(client)
        queued = dict(notes["recorded_recipients"])["queue"]
        self.assertEqual([address for address, _ in queued],
                         ["alice@example.com", "bob@example.net", "carol@example.com"])
        self.assertEqual(queued[0][1], {"test_threshold": "4", "test_action": "reject"})
        for _, rcpt_notes in queued[1:]:
            self.assertEqual(rcpt_notes, {"test_threshold": "4", "test_action": "reject",
                                          "original_recipient": "team@example.com"})

    def test_targets_are_grouped_by_the_alias_settings(self):
        client = self.client()
        self.assertEqual(codes_of(client.command("RCPT TO:<alice@example.com>")), [250])
        # team's threshold 4 differs from alice's 3: the whole alias goes to another transaction
        self.assertEqual(client.command("RCPT TO:<team@example.com>"),
                         "452 4.5.3 Try this recipient in another transaction\r\n")
        self.assertEqual([r.address for r in client.session.transaction.recipients],
                         ["alice@example.com"])

    def test_targets_from_another_notes_source(self):
        client = self.client("", plugins=(
            "note_rcpt list@example.com alias_targets=a@example.com"
            " broken@example.com alias_targets=nobody",
            "rcpt_recorder", "rcpt_ok", "scripted queue OK"))
        logs = capture_log(self, self.server)
        client.command("RCPT TO:<list@example.com>")
        client.command("RCPT TO:<broken@example.com>")
        self.assertIn((codes.LOGERROR, "<broken@example.com>: alias target 'nobody' is not an "
                                       "address, skipped"), logs)
        queued = dict(self.send(client)["recorded_recipients"])["queue"]
        self.assertEqual(queued, [("a@example.com", {"original_recipient": "list@example.com"}),
                                  ("broken@example.com", {"alias_targets": "nobody"})])

    def test_bad_values_are_reported_once_with_their_line(self):
        client = self.client("a@example.com test_threshold=lots\nb@example.com test_action=x\n")
        logs = capture_log(self, self.server)
        client.command("RCPT TO:<a@example.com>")
        warnings = [m for level, m in logs if level == codes.LOGWARN]
        self.assertEqual(len(warnings), 1)
        self.assertTrue(warnings[0].startswith(
            "%s:1: test_threshold=lots is not a valid value for plugin threshold_filter ("
            % self.path))
        self.assertIn("it gets the plugin's argument or default instead", warnings[0])
        client.command("RCPT TO:<b@example.com>")
        self.assertEqual(len([1 for level, _ in logs if level == codes.LOGWARN]), 1)
        # the lookup falls back to the default (5.0)
        self.assertEqual(self.send(client)["threshold_seen"], [(5.0, "tag")])

    def test_aliases_must_run_before_the_plugin_that_accepts(self):
        self.path = write(self, ALIASES)
        server = make_server(self, ["rcpt_ok", "aliases %s" % self.path, "threshold_filter",
                                    "scripted queue OK"])
        client = MemoryClient(server)
        client.command("HELO c.example")
        client.command("MAIL FROM:<s@sender.example>")
        client.command("RCPT TO:<sales@example.com>")
        self.assertEqual([(r.address, r.notes) for r in client.session.transaction.recipients],
                         [("sales@example.com", {})])


class ReloadTests(unittest.TestCase):
    """The file is re-read when it changes, in a thread; a broken file keeps the old table."""

    def setUp(self):
        self.clock = Clock()
        self.patch(aliases.Aliases, "clock", self.clock)
        self.path = write(self, "a@example.com test_threshold=3\n")
        self.server = make_server(self, ["aliases %s check_interval 10" % self.path,
                                         "threshold_filter", "rcpt_ok"])
        self.plugin = plugin_of(self.server)
        self.logs = capture_log(self, self.server)
        self.client = MemoryClient(self.server)
        self.client.command("HELO c.example")
        self.mtime = os.stat(self.path).st_mtime_ns

    def rewrite(self, text):
        with open(self.path, "w") as f:
            f.write(text)
        # a new modification time even on a coarse file system clock
        self.mtime += 10 ** 9
        os.utime(self.path, ns=(self.mtime, self.mtime))

    def threshold(self):
        """The note the next recipient gets (a fresh transaction each time)."""
        self.client.command("MAIL FROM:<s@sender.example>")
        self.client.command("RCPT TO:<a@example.com>")
        return self.client.session.transaction.recipients[0].notes.get("test_threshold")

    def errors(self):
        return [m for level, m in self.logs if level == codes.LOGERROR]

    async def test_changed_file_is_picked_up_after_the_interval(self):
        self.assertEqual(self.threshold(), "3")
        self.rewrite("a@example.com test_threshold=7\n")
        self.clock.advance(9)
        self.assertEqual(self.threshold(), "3")         # not checked yet
        self.assertIsNone(self.plugin.reloading)
        self.clock.advance(1)
        self.assertEqual(self.threshold(), "3")         # checked: parsing in a thread
        reloading = self.plugin.reloading
        self.assertFalse(reloading.called)
        self.clock.advance(10)
        self.assertEqual(self.threshold(), "3")         # the old table serves meanwhile
        self.assertIs(self.plugin.reloading, reloading)  # and no second reload starts
        await reloading
        self.assertIsNone(self.plugin.reloading)
        self.assertEqual(self.threshold(), "7")
        self.assertEqual(self.errors(), [])
        self.clock.advance(10)
        self.threshold()                                 # unchanged file: not read again
        self.assertIsNone(self.plugin.reloading)

    async def test_broken_file_keeps_the_old_table(self):
        self.rewrite("a@example.com test_threshold=7\nb@example.com test_threshold\n")
        self.clock.advance(10)
        self.threshold()
        await self.plugin.reloading
        self.assertEqual(self.threshold(), "3")
        self.assertEqual(self.errors(), [
            "%s:2: 'test_threshold': expected key=value or '->'; keeping the 1 entries loaded "
            "before" % self.path])
        # the same broken file is neither parsed nor reported again
        self.clock.advance(10)
        self.threshold()
        self.assertIsNone(self.plugin.reloading)
        self.assertEqual(len(self.errors()), 1)
        # once fixed, it is loaded
        self.rewrite("a@example.com test_threshold=8\n")
        self.clock.advance(10)
        self.threshold()
        await self.plugin.reloading
        self.assertEqual(self.threshold(), "8")

    async def test_removed_file_keeps_the_old_table(self):
        os.remove(self.path)
        self.clock.advance(10)
        self.assertEqual(self.threshold(), "3")
        self.assertIsNone(self.plugin.reloading)
        self.assertEqual(len(self.errors()), 1)
        self.assertIn("%s: cannot read: " % self.path, self.errors()[0])
        self.rewrite("a@example.com test_threshold=6\n")
        self.clock.advance(10)
        self.threshold()
        await self.plugin.reloading
        self.assertEqual(self.threshold(), "6")

    async def test_bad_value_in_a_new_file_is_reported_after_the_reload(self):
        self.rewrite("a@example.com test_threshold=high\n")
        self.clock.advance(10)
        self.threshold()
        await self.plugin.reloading
        self.assertEqual(self.threshold(), "high")  # the note is set; threshold_filter ignores it
        warnings = [m for level, m in self.logs if level == codes.LOGWARN]
        self.assertEqual(len(warnings), 1)
        self.assertIn("%s:1: test_threshold=high is not a valid value" % self.path, warnings[0])

    def test_check_interval_zero_checks_every_time(self):
        server = make_server(self, ["aliases %s check_interval 0" % self.path, "rcpt_ok"])
        plugin = plugin_of(server)
        self.rewrite("a@example.com test_threshold=5\n")
        client = MemoryClient(server)
        client.command("HELO c.example")
        client.command("MAIL FROM:<s@sender.example>")
        client.command("RCPT TO:<a@example.com>")
        self.assertIsNotNone(plugin.reloading)
        return plugin.reloading


SHOW_ALIASES = """\
# The show case of issue 5: three mailboxes, three spam thresholds.
@example.com        test_threshold=5
low@example.com     test_threshold=3
high@example.com    test_threshold=10
"""


class ShowCaseTests(unittest.TestCase):
    """One SMTP session over a real socket, three recipients with different thresholds.

    The message scores 6 (``X-Test-Score``, standing in for GTUBE's sure score):
    ``low`` (threshold 3) refuses it, ``mid`` (5, its domain's default) refuses it,
    ``high`` (10) takes it. The client retries each ``452 4.5.3`` recipient in a new
    transaction, as RFC 5321 clients do.
    """

    async def test_three_recipients_three_thresholds(self):
        await assert_three_thresholds(self, "aliases aliases", {"aliases": SHOW_ALIASES})
