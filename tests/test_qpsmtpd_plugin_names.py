"""Every plugin name of qpsmtpd 0.94 (the 91 files of Debian's qpsmtpd package) is here, and
the README's table of them says what each is: implemented, another name of a plugin, loaded
disabled (as 0.94 itself loads it where its Perl module is missing), or a script of 0.94's
that is a `qpsmtpd-tx` command here. The table is checked against the code both ways."""

import os
import re

from twisted.trial import unittest

from qpsmtpd_tx import loader
from qpsmtpd_tx.testing import make_server
from tests.support.harness import StartupErrorMixin

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGINS = os.path.join(CHECKOUT, "plugins")

#: the plugin files of qpsmtpd 0.94 (Debian's /usr/share/qpsmtpd/plugins, without registry.txt)
NAMES_094 = """
async/dns_whitelist_soft async/dnsbl async/earlytalker async/queue/smtp-forward
async/resolvable_fromhost async/rhsbl async/uribl auth/auth_checkpassword
auth/auth_cvm_unix_local auth/auth_flat_file auth/auth_ldap_bind auth/auth_vpopmail
auth/auth_vpopmail_sql auth/auth_vpopmaild auth/authdeny badmailfrom badmailfromto badrcptto
bogus_bounce check_badmailfrom check_badrcptto check_earlytalker check_loop check_relay
check_spamhelo connection_time content_log count_unrecognized_commands dkim dmarc
dns_whitelist_soft dnsbl domainkeys dont_require_anglebrackets dspam earlytalker fcrdns
greylisting headers helo help hosts_allow http_config ident/geoip ident/p0f karma karma_tool
loadcheck logging/adaptive logging/apache logging/connection_id logging/devnull logging/file
logging/syslog logging/transaction_id logging/warn loop milter naughty noop_counter
parse_addr_withhelo qmail_deliverable queue/exim-bsmtp queue/maildir queue/postfix-queue
queue/qmail-queue queue/smtp-forward quit_fortune random_error rcpt_map rcpt_ok rcpt_regexp
relay resolvable_fromhost rhsbl sender_permitted_from spamassassin stunnel tls tls_cert uribl
virus/aveclient virus/bitdefender virus/clamav virus/clamdscan virus/hbedv virus/kavscanner
virus/klez_filter virus/sophie virus/uvscan whitelist
""".split()

#: 0.94's scripts among its plugin files, and the command that does their work here
COMMANDS = {"karma_tool": "qpsmtpd-tx karma", "tls_cert": "qpsmtpd-tx tls-cert"}
#: loaded, but with no hook: what the start-up log says
DISABLED = {"domainkeys": "use 'dkim'", "auth/auth_vpopmail": "auth/auth_checkpassword"}


def readme_table():
    """``{name: status text}`` from the README's table of qpsmtpd 0.94's plugin names."""
    with open(os.path.join(CHECKOUT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## qpsmtpd 0.94's plugins here", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section, re.M))


class PluginNamesTests(StartupErrorMixin, unittest.TestCase):
    def test_there_are_91_names(self):
        self.assertEqual(len(set(NAMES_094)), 91)

    def test_debian_names_are_these(self):
        debian = "/usr/share/qpsmtpd/plugins"
        if not os.path.isdir(debian):
            raise unittest.SkipTest("Debian's qpsmtpd package is not installed")
        found = set()
        for root, _, files in os.walk(debian):
            for name in files:
                found.add(os.path.relpath(os.path.join(root, name), debian))
        self.assertEqual(found - {"registry.txt"}, set(NAMES_094))

    def test_readme_table_lists_every_name_once(self):
        table = readme_table()
        self.assertEqual(sorted(table), sorted(NAMES_094))

    def test_every_plugin_name_loads_as_the_table_says(self):
        table = readme_table()
        for name in NAMES_094:
            status = table[name]
            if name in COMMANDS:
                self.assertIn(COMMANDS[name], status)
                continue
            cls, source = loader.resolve_plugin_class(name, [PLUGINS])
            self.assertTrue(callable(cls), name)
            path = loader.find_plugin_file(name, [PLUGINS])
            alias = getattr(loader.load_plugin_module(path), "ALIAS_OF", None)
            if alias is not None:
                self.assertIn("of `%s`" % alias, status, name)
            elif name in DISABLED:
                self.assertTrue(status.startswith("loads disabled"), name)
            else:
                self.assertEqual(status, "implemented", name)

    def test_scripts_stop_start_up_naming_the_command(self):
        for name, command in COMMANDS.items():
            self.assertStartupError(["rcpt_ok", name], [":2: plugin %s" % name, command])

    def test_disabled_plugins_register_no_hook(self):
        for name in DISABLED:
            server = make_server(self, [name, "rcpt_ok"])
            plugin = [p for p in server.chain.plugins if p.name == loader.escape_plugin_name(name)]
            self.assertEqual(len(plugin), 1, name)
            self.assertEqual([m for m in dir(type(plugin[0])) if m.startswith("hook_")], [],
                             name)
