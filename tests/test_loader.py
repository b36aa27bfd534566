"""Plugin loading: names, instances, packaged plugins, aliases and every start-up error."""

import os

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from qpsmtpd_tx.config import Config
from qpsmtpd_tx.interfaces import IPlugin
from qpsmtpd_tx.loader import escape_plugin_name
from qpsmtpd_tx.paths import default_plugin_dirs
from qpsmtpd_tx.server import SMTPServer, StartupError, config_problems
from tests.support.harness import TEST_PLUGINS, MemoryClient, StartupErrorMixin, make_server, write_config


def write_plugin(directory, name, source):
    path = os.path.join(directory, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(source)
    return path


class EscapeTests(unittest.TestCase):
    def test_qpsmtpd_names(self):
        self.assertEqual(escape_plugin_name("queue/qmail-queue"), "queue::qmail_2dqueue")
        self.assertEqual(escape_plugin_name("rcpt_ok:0"), "rcpt_ok_3a0")
        self.assertEqual(escape_plugin_name("logging/warn"), "logging::warn")
        self.assertEqual(escape_plugin_name("queue/smtp-forward:1"), "queue::smtp_2dforward_3a1")
        self.assertEqual(escape_plugin_name("virus/3rdparty"), "virus::_33rdparty")


class LoadTests(StartupErrorMixin, unittest.TestCase):
    def test_plugins_provide_interface(self):
        server = make_server(self, ["rcpt_ok", "queue/maildir %s" % self.mktemp(), "scripted rcpt OK"])
        self.assertEqual([p.name for p in server.plugins], ["rcpt_ok", "queue::maildir", "scripted"])
        for plugin in server.plugins:
            self.assertTrue(verifyObject(IPlugin, plugin))

    def test_second_instance(self):
        server = make_server(self, ["scripted rcpt DECLINED", "scripted:1 rcpt DENY second"])
        self.assertEqual([p.name for p in server.plugins], ["scripted", "scripted_3a1"])
        self.assertEqual([p.path for p in server.plugins], ["scripted", "scripted:1"])
        client = MemoryClient(server)
        client.command("HELO x")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:<u@example.com>"), "550 second\r\n")

    def test_packaged_plugin_by_dotted_path_and_perl_style_name(self):
        for name in ("tests.pyplugins.greeter", "tests::pyplugins::greeter",
                     "tests.pyplugins.greeter.Greeter"):
            client = MemoryClient(make_server(self, ["%s hi there" % name]))
            self.assertEqual(client.command("HELP"), "214 hi there\r\n", name)

    def test_missing_plugin(self):
        message = self.assertStartupError(["rcpt_ok", "nope/missing x"], ":2: plugin nope/missing: plugin not found")
        self.assertRegex(message, r"^/\S+/plugins:2: plugin nope/missing: plugin not found \(looked in ")

    def test_bad_arguments(self):
        self.assertStartupError(["scripted rcpt"], ":1: plugin scripted: usage: scripted HOOK CODE")
        self.assertStartupError(["rcpt_ok extra"], ":1: plugin rcpt_ok: takes no arguments")

    def test_unknown_hook(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "badhook", (
            "from qpsmtpd_tx.plugin import Plugin\n"
            "class Bad(Plugin):\n"
            "    def hook_rcpt_to(self, transaction):\n"
            "        return 909\n"))
        self.assertStartupError(["badhook"], ":1: plugin badhook: invalid hook method hook_rcpt_to",
                                {"plugin_dirs": directory})

    def test_unknown_hook_registered_explicitly(self):
        self.assertStartupError(["scripted greeting OK"], ":1: plugin scripted: scripted: invalid hook: greeting")

    def test_import_error_and_syntax_error(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "broken", "import no_such_module_here\n")
        write_plugin(directory, "syntax", "def (:\n")
        self.assertStartupError(["broken"], "plugin broken failed to load: ModuleNotFoundError",
                                {"plugin_dirs": directory})
        self.assertStartupError(["syntax"], ":1: plugin syntax: syntax error in",
                                {"plugin_dirs": directory})

    def test_no_plugin_class(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "empty", '"""nothing here"""\n')
        self.assertStartupError(["empty"], "defines 0 plugin classes", {"plugin_dirs": directory})

    def test_alias(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "check_rcpt_ok", '"""old name"""\nALIAS_OF = "rcpt_ok"\n')
        write_plugin(directory, "loop_a", 'ALIAS_OF = "loop_b"\n')
        write_plugin(directory, "loop_b", 'ALIAS_OF = "loop_a"\n')
        server = make_server(self, ["check_rcpt_ok"],
                             {"plugin_dirs": "\n".join([directory] + default_plugin_dirs())})
        self.assertEqual(type(server.plugins[0]).__name__, "RcptOk")
        self.assertEqual(server.plugins[0].name, "check_rcpt_ok")
        self.assertStartupError(["loop_a"], "alias loop: loop_a -> loop_b -> loop_a",
                                {"plugin_dirs": directory})

    def test_isa_plugin_extends_a_bundled_plugin(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "rcpt_ok_but_nobody.py", (
            '"""rcpt_ok, but never for nobody@."""\n'
            "from qpsmtpd_tx.codes import DENY\n"
            "from qpsmtpd_tx.extend import isa_plugin\n"
            "RcptOk = isa_plugin('rcpt_ok')\n"
            "class RcptOkButNobody(RcptOk):\n"
            "    def hook_rcpt(self, transaction, recipient, params):\n"
            "        if recipient.user == 'nobody':\n"
            "            return DENY, 'not nobody'\n"
            "        return super().hook_rcpt(transaction, recipient, params)\n"))
        server = make_server(self, ["rcpt_ok_but_nobody", "rcpt_ok"],
                             {"plugin_dirs": "\n".join([directory] + default_plugin_dirs())})
        extended, bundled = server.plugins
        self.assertIsInstance(extended, type(bundled))
        self.assertEqual(extended.name, "rcpt_ok_but_nobody")
        client = MemoryClient(server)
        client.command("HELO x")
        client.command("MAIL FROM:<a@b.example>")
        self.assertEqual(client.command("RCPT TO:<nobody@example.com>"), "550 not nobody\r\n")
        self.assertEqual(client.command("RCPT TO:<u@example.com>")[:4], "250 ")
        self.assertEqual(client.command("RCPT TO:<u@elsewhere.example>"),
                         "550 Relaying denied (#5.7.1)\r\n")

    def test_isa_plugin_finds_the_base_in_the_configured_plugin_dirs(self):
        base_dir, own_dir = os.path.abspath(self.mktemp()), os.path.abspath(self.mktemp())
        write_plugin(base_dir, "site/base.py", (
            "from qpsmtpd_tx.codes import OK\n"
            "from qpsmtpd_tx.plugin import Plugin\n"
            "class Base(Plugin):\n"
            "    GREETING = 'base'\n"
            "    def hook_help(self, transaction, args):\n"
            "        return OK, self.GREETING\n"))
        write_plugin(own_dir, "site/derived", (
            "from qpsmtpd_tx.extend import isa_plugin\n"
            "class Derived(isa_plugin('site/base')):\n"
            "    GREETING = 'derived'\n"))
        server = make_server(self, ["site/derived"], {"plugin_dirs": own_dir + "\n" + base_dir})
        self.assertEqual(MemoryClient(server).command("HELP"), "214 derived\r\n")

    def test_isa_plugin_of_a_missing_plugin_names_the_line(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "orphan.py", (
            "from qpsmtpd_tx.extend import isa_plugin\n"
            "class Orphan(isa_plugin('no_such_base')):\n"
            "    pass\n"))
        self.assertStartupError(["rcpt_ok", "orphan"],
                                ":2: plugin orphan: isa_plugin('no_such_base'): plugin not found",
                                {"plugin_dirs": directory})

    def test_deny_and_ok_hooks_see_decisions(self):
        server = make_server(self, ["scripted deny DECLINED", "scripted:1 ok DECLINED",
                                    "scripted:2 rcpt DENY no way", "scripted:3 mail OK"])
        client = MemoryClient(server)
        client.command("HELO x")
        client.command("MAIL FROM:<a@b.example>")
        client.command("RCPT TO:<u@example.com>")
        calls = [c for c in client.session.connection.notes["scripted_calls"] if c[0] in ("deny", "ok")]
        self.assertEqual(calls, [("ok", ("scripted_3a3", 900, "")),
                                 ("deny", ("scripted_3a2", 901, "no way"))])

    def test_perl_plugin_is_named_as_such(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "perlish", "#!perl -w\nuse strict;\nsub hook_rcpt { return (OK); }\n")
        self.assertStartupError(["perlish"], "perlish is a Perl plugin (qpsmtpd's)",
                                {"plugin_dirs": directory})

    def test_perl_plugin_message_says_what_to_do(self):
        directory = os.path.abspath(self.mktemp())
        # a name no qpsmtpd-tx plugin has (greylisting, the example before, is ported now)
        write_plugin(directory, "unported", "#!perl -w\nuse strict;\nsub register { }\n")
        message = self.assertStartupError(["unported"], "has none named unported: comment "
                                          "the line out, or port the plugin to Python",
                                          {"plugin_dirs": directory})
        self.assertNotIn("use its own plugin", message)

    def test_own_plugins_come_before_config_plugin_dirs(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "rcpt_ok", "use strict;\nsub hook_rcpt { }\n")
        server = make_server(self, ["rcpt_ok"], {"plugin_dirs": directory})
        self.assertEqual(type(server.plugins[0]).__name__, "RcptOk")


class SpoolDirTests(unittest.TestCase):
    def test_unusable_spool_dir_stops_startup(self):
        blocker = os.path.abspath(self.mktemp())
        with open(blocker, "w") as f:
            f.write("a file, not a directory")
        with self.assertRaises(StartupError) as caught:
            make_server(self, ["rcpt_ok"], {"spool_dir": os.path.join(blocker, "spool")})
        self.assertIn("cannot use spool_dir %s/spool: " % blocker, str(caught.exception))

    def test_spool_dir_created_with_spool_perms(self):
        spool = os.path.join(os.path.abspath(self.mktemp()), "spool")
        make_server(self, ["rcpt_ok"], {"spool_dir": spool, "spool_perms": "0750"})
        self.assertEqual(os.stat(spool).st_mode & 0o777, 0o750)


class ConfigHookTests(unittest.TestCase):
    def test_config_hook_supplies_values(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "confsrc", (
            "from qpsmtpd_tx.codes import OK, DECLINED\n"
            "from qpsmtpd_tx.plugin import Plugin\n"
            "class ConfSrc(Plugin):\n"
            "    def hook_config(self, transaction, name):\n"
            "        return (OK, ['hooked.example']) if name == 'rcpthosts' else DECLINED\n"))
        server = make_server(self, ["confsrc", "rcpt_ok"], {"plugin_dirs": directory})
        self.assertEqual(server.config.get("rcpthosts"), ["hooked.example"])
        self.assertEqual(server.config.get("me"), ["mx.example.org"])
        self.assertIn("hooked.example", server.plugins[1].local_domains()[0])   # rcpt_ok reads it through the hook


class StopTests(unittest.TestCase):
    def test_stop_calls_every_plugin(self):
        directory = os.path.abspath(self.mktemp())
        write_plugin(directory, "stopper", (
            "from qpsmtpd_tx.plugin import Plugin\n"
            "STOPPED = []\n"
            "class Stopper(Plugin):\n"
            "    def init(self, args):\n"
            "        self.label = args[0]\n"
            "    def stop(self):\n"
            "        STOPPED.append(self.label)\n"))
        server = make_server(self, ["stopper a", "stopper:1 b", "rcpt_ok"], {"plugin_dirs": directory})
        d = server.stop_plugins()
        module = __import__(type(server.plugins[0]).__module__, fromlist=["STOPPED"])
        self.assertEqual(module.STOPPED, ["a", "b"])
        return d


class AllProblemsTests(unittest.TestCase):
    """One start reports every problem of the config, each with its file and line."""

    def broken_config(self):
        directory = write_config(os.path.abspath(self.mktemp()), [
            "rcpt_ok extra",                     # 1: bad argument
            "no_such_plugin",                    # 2: not found
            "# comment",
            "queue/maildir %s" % os.path.abspath(self.mktemp()),   # 4: fine
            "bad\xe9byte",                       # 5: not ASCII
            "scripted rcpt",                     # 6: bad argument (test plugin)
            "other_missing one two",             # 7: not found
        ], {"recipient_policy": "sometimes", "logging": "logging/warn NOISY\n",
            "plugin_dirs": "\n".join([TEST_PLUGINS] + default_plugin_dirs())})
        return directory

    def test_startup_error_lists_every_problem(self):
        directory = self.broken_config()
        with self.assertRaises(StartupError) as caught:
            SMTPServer(Config(config_dir=directory, qmail_dir=directory, environ={}))
        plugins = os.path.join(directory, "plugins")
        problems = caught.exception.problems
        expected = [
            os.path.join(directory, "recipient_policy") + ":1: recipient_policy must be one of",
            plugins + ":5: byte 0xc3 at column 4",
            os.path.join(directory, "logging") + ":1: plugin logging/warn: ",
            plugins + ":1: plugin rcpt_ok: takes no arguments",
            plugins + ":2: plugin no_such_plugin: plugin not found",
            plugins + ":6: plugin scripted: usage: scripted HOOK CODE",
            plugins + ":7: plugin other_missing: plugin not found",
        ]
        self.assertEqual(len(problems), len(expected), problems)
        for problem, start in zip(problems, expected):
            self.assertTrue(problem.startswith(start), (problem, start))
        self.assertEqual(str(caught.exception), "\n".join(problems))

    def test_config_problems_checks_without_creating(self):
        directory = self.broken_config()
        config = Config(config_dir=directory, qmail_dir=directory, environ={})
        problems = config_problems(config)
        self.assertEqual(len(problems), 7, problems)
        # the Maildir of line 4 and the spool dir are not created by a check
        self.assertEqual(sorted(os.listdir(os.path.dirname(directory))), [os.path.basename(directory)])
        self.assertFalse(os.path.exists(os.path.join(directory, "spool")))

    def test_config_problems_of_a_good_config(self):
        maildir = os.path.abspath(self.mktemp())
        directory = write_config(os.path.abspath(self.mktemp()),
                                 ["rcpt_ok", "queue/maildir %s" % maildir])
        self.assertEqual(config_problems(Config(config_dir=directory, environ={})), [])
        self.assertFalse(os.path.exists(maildir))
        self.assertFalse(os.path.exists(os.path.join(directory, "spool")))
