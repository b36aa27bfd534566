"""The ``qpsmtpd-tx`` command line (also ``python -m qpsmtpd_tx``).

``qpsmtpd-tx plugins``            list every plugin file in the plugin directories and every
                                  plugin of an installed package (with the package and its
                                  version), with the first line of its documentation
``qpsmtpd-tx plugins doc NAME``   print the whole documentation of plugin NAME
``qpsmtpd-tx check-config``       check a config directory as a start would, without starting:
                                  every problem on its own line, exit status 1; 0 if none
``qpsmtpd-tx config-items``       the core's config items with their defaults; with ``--config
                                  DIR`` the value in effect and the file and line it comes from
``qpsmtpd-tx tls-cert``           write a self-signed certificate and key where the ``tls``
                                  plugin looks by default (``--config DIR``, ``--hostname``,
                                  ``--force`` to replace a pair)
``qpsmtpd-tx karma COMMAND``      qpsmtpd's karma_tool: list, search, capture, release, prune
                                  karma's database (:mod:`qpsmtpd_tx.karma_tool`)
``qpsmtpd-tx notes ADDRESS``      what every notes source sets for ADDRESS and which value each
                                  filter would use (:mod:`qpsmtpd_tx.notes_report`)
``qpsmtpd-tx forkserver ...``     run the server with qpsmtpd-forkserver's options
                                  (:mod:`qpsmtpd_tx.forkserver`)

A plugin's documentation is its module docstring, read with :mod:`ast` — listing plugins
never runs their code. An alias file (``ALIAS_OF = "relay"``) is shown as ``alias of relay``.
The server itself is started with ``twistd qpsmtpd-tx`` (or ``qpsmtpd-tx forkserver``).
"""

import argparse
import ast
import os
import re
import socket
import sys

from qpsmtpd_tx import __version__, config_items, forkserver, karma_tool, notes_report, tls
from qpsmtpd_tx.config import Config
from qpsmtpd_tx.loader import find_plugin, find_plugin_file
from qpsmtpd_tx.packages import package_plugins, plugin_source
from qpsmtpd_tx.plugin import PluginError
from qpsmtpd_tx.paths import default_plugin_dirs, program_dir
from qpsmtpd_tx.server import config_problems
from qpsmtpd_tx.startup import config_dir_problem

_SKIP_SUFFIXES = (".pyc", ".pyo", "~", ".orig", ".rej", ".swp")


class PluginInfo:
    """What a plugin file says about itself, found without executing it."""

    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.doc = None
        self.alias_of = None
        self.error = None
        try:
            with open(path, "rb") as f:
                source = f.read()
            tree = ast.parse(source, filename=path)
        except (OSError, SyntaxError, ValueError) as e:
            self.error = "unreadable: %s" % (e,)
            return
        self.doc = ast.get_docstring(tree)
        self.alias_of = alias_target(tree)

    def summary(self):
        """One line for the listing."""
        if self.error:
            return "(%s)" % self.error
        if self.alias_of:
            return "alias of %s" % self.alias_of
        if not self.doc:
            return "(no documentation)"
        first = self.doc.strip().splitlines()[0].strip()
        # "relay — decide …": the name is in the first column already
        for name in (self.name, self.name.rsplit("/", 1)[-1]):
            for sep in (" — ", " - ", " -- "):
                if first.startswith(name + sep):
                    return first[len(name) + len(sep):]
        return first


def alias_target(tree):
    """The value of a top-level ``ALIAS_OF = "name"`` assignment, or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str):
            if any(isinstance(t, ast.Name) and t.id == "ALIAS_OF" for t in node.targets):
                return node.value.value
    return None


def iter_plugin_files(plugin_dirs):
    """(name, path) of every plugin file, sorted by name; the first directory wins a name."""
    found = {}
    for directory in plugin_dirs:
        if not os.path.isdir(directory):
            continue
        for root, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__pycache__")
            for filename in files:
                if filename.startswith(".") or filename.endswith(_SKIP_SUFFIXES):
                    continue
                path = os.path.join(root, filename)
                name = os.path.relpath(path, directory).replace(os.sep, "/")
                if name.endswith(".py"):
                    name = name[:-3]
                found.setdefault(name, path)
    return sorted(found.items())


def list_plugins(plugin_dirs, out):
    """The plugin files of ``plugin_dirs`` and the installed packages' plugins, with summaries."""
    infos = [PluginInfo(name, path) for name, path in iter_plugin_files(plugin_dirs)]
    rows = [(info.name, info.summary()) for info in infos]
    rows += _package_rows(plugin_dirs)
    if not rows:
        out.write("no plugins found in %s\n" % ", ".join(plugin_dirs))
        return 1
    width = max(len(name) for name, _ in rows) + 2
    for name, summary in sorted(rows):
        out.write("%-*s%s\n" % (width, name, summary))
    return 0


def _package_rows(plugin_dirs):
    """``(name, "[package version] summary")`` of each plugin an installed package publishes.

    A name is marked taken twice when the loader would refuse it (loader.find_plugin: two
    packages, or a package and a plugin file that is not one of qpsmtpd's Perl plugins).
    """
    rows = []
    for name, published in package_plugins().items():
        try:
            find_plugin(name, plugin_dirs)
            clash = False
        except PluginError:
            clash = True
        for plugin in published:
            path = plugin_source(plugin)
            summary = PluginInfo(name, path).summary() if path else "(source not found)"
            if clash:
                summary = "NAME TAKEN TWICE, cannot be loaded by this name; " + summary
            rows.append((name, "[%s %s] %s" % (plugin.package, plugin.version, summary)))
    return rows


def plugin_doc(name, plugin_dirs, out, err):
    seen = []
    while True:
        try:
            path, published = find_plugin(name, plugin_dirs)
        except PluginError as e:
            err.write("qpsmtpd-tx: %s\n" % e)
            return 1
        if published is not None:
            path = plugin_source(published)
            if path is None:
                err.write("qpsmtpd-tx: plugin %s: no source file for %s\n" % (name, published))
                return 1
            out.write("%s: plugin of %s\n\n" % (name, published))
        if path is None:
            err.write("qpsmtpd-tx: no plugin %r (looked in %s)\n" % (name, ", ".join(plugin_dirs)))
            return 1
        info = PluginInfo(name, path)
        if info.error:
            err.write("qpsmtpd-tx: %s: %s\n" % (path, info.error))
            return 1
        if seen:
            out.write("\n%s is an alias of %s:\n\n" % (seen[0], name))
        if info.doc:
            out.write(info.doc.rstrip() + "\n")
        elif not info.alias_of:
            err.write("qpsmtpd-tx: plugin %s (%s) has no documentation\n" % (name, path))
            return 1
        if not info.alias_of:
            return 0
        seen.append(name)
        if info.alias_of in seen:
            err.write("qpsmtpd-tx: alias loop: %s\n" % " -> ".join(seen + [info.alias_of]))
            return 1
        name = info.alias_of


def _open_config(config_dir, err):
    """The Config of a ``--config`` argument (None: the default lookup), or None after
    telling ``err`` why that directory cannot be one."""
    problem = config_dir_problem(config_dir)
    if problem:
        err.write("qpsmtpd-tx: %s\n" % problem)
        return None
    return Config(config_dir=config_dir, program_dir=program_dir())


def check_config(config_dir, out, err):
    """``qpsmtpd-tx check-config``: print every problem of the config; 1 if any, else 0.

    The plugins are initialised in check-only mode (see :func:`qpsmtpd_tx.server.config_problems`):
    their arguments and config files are checked, but nothing is created and nothing listens.
    """
    config = _open_config(config_dir, err)
    if config is None:
        return 1
    where = config.config_dir or "the default config locations"
    problems = config_problems(config)
    for line in problems:
        out.write(line + "\n")
    if problems:
        err.write("qpsmtpd-tx: %d problem%s in %s\n"
                  % (len(problems), "" if len(problems) == 1 else "s", where))
        return 1
    out.write("qpsmtpd-tx: %s: no problems found\n" % where)
    return 0


def print_config_items(config_dir, out, err):
    """``qpsmtpd-tx config-items``: the table of core config items; 1 if a value is bad."""
    config = None
    if config_dir is not None:
        config = _open_config(config_dir, err)
        if config is None:
            return 1
    rows, problems = config_items.describe(config)
    header = ("ITEM", "DEFAULT", "DESCRIPTION") if config is None else \
        ("ITEM", "VALUE", "FROM", "DESCRIPTION")
    rows = [header] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  "
                  + row[-1] + "\n")
    for line in problems:
        err.write("qpsmtpd-tx: %s\n" % line)
    return 1 if problems else 0


def tls_cert(config_dir, hostname, force, out, err):
    """``qpsmtpd-tx tls-cert``: a self-signed pair where the ``tls`` plugin looks by default
    (qpsmtpd's ``plugins/tls_cert``); an existing pair is kept unless ``force``."""
    config = _open_config(config_dir, err)
    if config is None:
        return 1
    cert, key = tls.default_paths(config)[:2]
    existing = [path for path in (cert, key) if os.path.exists(path)]
    if existing and not force:
        err.write("qpsmtpd-tx: %s exists; --force replaces it\n" % " and ".join(existing))
        return 1
    hostname = hostname or config_items.value(config, "me") or socket.getfqdn()
    tls.write_self_signed(cert, key, hostname)
    out.write("qpsmtpd-tx: wrote a self-signed certificate for %s:\n  %s\n  %s\n"
              % (hostname, cert, key))
    return 0


def _config_option(command):
    command.add_argument("--config", metavar="DIR",
                         help="the qpsmtpd config directory (default: $QPSMTPD_CONFIG)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="qpsmtpd-tx",
        description="qpsmtpd-tx tools. The server itself runs with `twistd qpsmtpd-tx` "
                    "or `qpsmtpd-tx forkserver`.")
    parser.add_argument("--version", action="version", version="qpsmtpd-tx " + __version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    plugins = commands.add_parser("plugins", help="list plugins or show a plugin's documentation")
    plugins.add_argument("--plugin-dir", action="append", metavar="DIR",
                         help="look in DIR (repeatable) instead of the default plugin directory")
    plugins.add_argument("action", nargs="?", choices=["list", "doc"], default="list",
                         help="list (default) or doc NAME")
    plugins.add_argument("name", nargs="?", help="the plugin, as named in the plugins file")
    check = commands.add_parser(
        "check-config", help="check a config directory as a start would, without starting",
        description="Read the config, find and initialise every plugin (creating nothing, "
                    "listening nowhere) and list every problem; exit status 1 if any.")
    _config_option(check)
    items = commands.add_parser(
        "config-items", help="list the core's config items, their defaults and what they do",
        description="List the core's config items (files of the config directory) with their "
                    "defaults; with --config, the value in effect and the file it comes from.")
    items.add_argument("--config", metavar="DIR",
                       help="show the values of this config directory")
    cert = commands.add_parser(
        "tls-cert", help="write a self-signed certificate and key where the tls plugin looks",
        description="Write ssl/qpsmtpd-server.crt and .key (the tls plugin's defaults) for "
                    "HOSTNAME (default: the config's me).")
    _config_option(cert)
    cert.add_argument("--hostname", help="the name in the certificate")
    cert.add_argument("--force", action="store_true", help="replace an existing pair")
    karma = commands.add_parser(
        "karma", help="list and edit karma's database (qpsmtpd's karma_tool)",
        description="qpsmtpd's karma_tool: list, search, capture, release or prune the "
                    "clients in karma's database (the file store or Redis).")
    karma_tool.add_arguments(karma)
    notes = commands.add_parser(
        "notes", help="what every notes source sets for a recipient, and what each filter uses",
        description="Load the config's plugins (without listening), ask every notes source "
                    "(aliases, rcpt_notes/sql, rcpt_notes/ldap, user_config) about ADDRESS and "
                    "print the value each filter's per-recipient settings would take.")
    notes.add_argument("address", metavar="ADDRESS", help="the recipient, user@domain")
    _config_option(notes)
    commands.add_parser("forkserver", add_help=False,
                        help="run the server with qpsmtpd-forkserver's options (see --help)")
    return parser


def main(argv=None, out=None, err=None):
    """Run the command line; returns the exit status.

    A reader that goes away (``qpsmtpd-tx plugins doc X | head``) ends the output quietly,
    with status 1, instead of a BrokenPipeError traceback.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        status = _run(argv, out, err)
        out.flush()
    except BrokenPipeError:
        _discard_output(out)
        return 1
    return status


def _discard_output(out):
    """Point ``out`` at /dev/null so that the flush at interpreter exit cannot fail again."""
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _run(argv, out, err):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["forkserver"]:
        return forkserver.main(argv[1:], prog="qpsmtpd-tx forkserver")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "check-config":
        return check_config(args.config, out, err)
    if args.command == "config-items":
        return print_config_items(args.config, out, err)
    if args.command == "karma":
        return karma_tool.main(args, out, err)
    if args.command == "tls-cert":
        return tls_cert(args.config, args.hostname, args.force, out, err)
    if args.command == "notes":
        config = _open_config(args.config, err)
        return 1 if config is None else notes_report.main(config, args.address, out, err)
    if args.command != "plugins":
        parser.print_help(out)
        return 2
    dirs = args.plugin_dir or default_plugin_dirs()
    if args.action == "doc":
        if not args.name:
            err.write("qpsmtpd-tx: usage: qpsmtpd-tx plugins doc NAME\n")
            return 2
        # "relay:1" in a plugins file is a second instance of "relay"
        return plugin_doc(re.sub(r"(?<=[^:]):[0-9]+$", "", args.name), dirs, out, err)
    if args.name:
        err.write("qpsmtpd-tx: unexpected argument %r\n" % (args.name,))
        return 2
    return list_plugins(dirs, out)
