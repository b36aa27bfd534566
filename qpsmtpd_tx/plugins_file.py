"""The ``plugins`` and ``logging`` config items: one plugin per line, ``[timeout=S] NAME[:N] ARG ...``.

``NAME`` is a path under a plugin directory (``queue/qmail-queue``); ``NAME:N`` is a
further instance of the same plugin file; ``Pkg::Name`` names a packaged plugin. Lines
must be printable ASCII. qpsmtpd also rejects TAB; we accept it as whitespace.

``timeout=SECONDS`` before the name (ours, not qpsmtpd's) sets how long each of that plugin's
hooks may wait for an answer (``0``: no limit) instead of the config item ``plugin_timeout``.
It goes before the name so that it can be neither an argument of the plugin nor part of
``NAME:N``; a first word holding ``=`` is never a plugin name here.
"""

import re

import attr

from qpsmtpd_tx.config import ConfigError, split_words

_INSTANCE = re.compile(r"(.+?):([0-9]+)")
_OPTION = re.compile(r"([A-Za-z_]+)=(.*)")
_SECONDS = re.compile(r"[0-9]+(\.[0-9]*)?")
_ALLOWED = frozenset(range(0x20, 0x7F)) | {0x09}


@attr.s(frozen=True)
class PluginLine:
    """One parsed plugin line and where it came from.

    ``instance`` is the ``N`` of ``NAME:N`` as a string, or None; ``timeout`` the seconds
    of a ``timeout=`` option, or None.
    """

    name = attr.ib()
    instance = attr.ib()
    args = attr.ib(converter=tuple)
    path = attr.ib()
    lineno = attr.ib()
    timeout = attr.ib(default=None)


def parse_plugin_line(line):
    """Parse one :class:`~qpsmtpd_tx.config.ConfigLine` into a :class:`PluginLine`."""
    # Config text keeps undecodable bytes as surrogates; this gives back the file's bytes.
    raw = line.text.encode("utf-8", "surrogateescape")
    for column, byte in enumerate(raw, 1):
        if byte not in _ALLOWED:
            raise ConfigError(
                "byte 0x%02x at column %d: plugin lines must be printable ASCII" % (byte, column),
                line.path, line.lineno)
    words = split_words(line.text)
    if not words:
        raise ConfigError("empty plugin line", line.path, line.lineno)
    timeout = None
    while words and _OPTION.fullmatch(words[0]):
        key, value = _OPTION.fullmatch(words.pop(0)).groups()
        if key != "timeout":
            raise ConfigError("unknown plugin option %r (the only one is timeout=SECONDS)" % key,
                              line.path, line.lineno)
        if not _SECONDS.fullmatch(value):
            raise ConfigError("timeout=%s: not a number of seconds" % value, line.path, line.lineno)
        timeout = float(value)
    if not words:
        raise ConfigError("no plugin name after the options", line.path, line.lineno)
    name, *args = words
    instance = None
    match = _INSTANCE.fullmatch(name)
    if "::" in name:
        if match and not match.group(1).endswith(":"):
            raise ConfigError("%s: a package plugin cannot have an instance number" % name,
                              line.path, line.lineno)
    elif match:
        name, instance = match.groups()
    return PluginLine(name, instance, args, line.path, line.lineno, timeout)


def read_plugins_file(config, item="plugins"):
    """The plugin lines of config item ``item`` (default ``plugins``), in order."""
    return [parse_plugin_line(line) for line in config.get_lines(item)]


def plugin_lines_and_problems(config, item="plugins"):
    """``(lines, problems)`` of config item ``item``: every good line, and a ``file:line:``
    message for each bad one (or for the file itself when it cannot be read)."""
    lines, problems = [], []
    try:
        config_lines = config.get_lines(item)
    except ConfigError as e:
        return [], [str(e)]
    for line in config_lines:
        try:
            lines.append(parse_plugin_line(line))
        except ConfigError as e:
            problems.append(str(e))
    return lines, problems


def read_logging_file(config):
    """The logging plugin lines of config item ``logging``, in order."""
    return read_plugins_file(config, "logging")
