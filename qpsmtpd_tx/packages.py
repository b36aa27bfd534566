"""Plugins published by installed packages: entry points of the group ``qpsmtpd_tx.plugins``.

A package publishes a plugin by declaring an entry point in that group, e.g. in its
``pyproject.toml``::

    [project.entry-points."qpsmtpd_tx.plugins"]
    sender_tld = "qptx_example.sender_tld:SenderTld"

The entry point's name is what operators write in ``plugins``; its value names the plugin
class (``module:Class``) or a module that defines exactly one. Names must be unique: a name
published by two packages, or by a package and a plugin file of the plugin directories, is a
start-up error naming both, when a ``plugins`` line uses it (a Perl plugin file of the same
name does not count: qpsmtpd-tx cannot run it, so the package's plugin replaces it).

Nothing here imports a package's code; :func:`plugin_source` finds the file to read the
documentation from (importing the parent packages of a dotted module, as Python must).
"""

import importlib.metadata
import importlib.util
import os
import re
import sys

import attr

from qpsmtpd_tx.plugin import PluginError

ENTRY_POINT_GROUP = "qpsmtpd_tx.plugins"


@attr.s(frozen=True)
class PackagePlugin:
    """A plugin an installed package publishes: ``name`` (as written in ``plugins``), the
    ``entry_point``, and the distribution's ``package`` name and ``version``."""

    name = attr.ib()
    entry_point = attr.ib()
    package = attr.ib()
    version = attr.ib()

    def __str__(self):
        return "package %s %s (%s)" % (self.package, self.version, self.entry_point.value)


def _normalized(name):
    """A distribution name as Python packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _path_state():
    """What changes when a package is installed or removed: ``sys.path`` and its mtimes."""
    state = []
    for entry in sys.path:
        try:
            state.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            state.append((entry, None))
    return tuple(state)


_scanned = [None, None]


def package_plugins():
    """``{name: [PackagePlugin, …]}`` of every installed distribution's published plugins.

    A distribution found twice on ``sys.path`` counts once (the first, which Python imports).
    Scanning every distribution takes milliseconds, and start-up asks once per plugin line:
    the result is kept until ``sys.path`` or one of its directories changes. Do not modify it.
    """
    state = _path_state()
    if _scanned[0] != state:
        _scanned[:] = [state, _scan()]
    return _scanned[1]


def _scan():
    found, seen = {}, set()
    for dist in importlib.metadata.distributions():
        package = dist.metadata["Name"] or "?"
        if _normalized(package) in seen:
            continue
        seen.add(_normalized(package))
        for ep in dist.entry_points:
            if ep.group == ENTRY_POINT_GROUP:
                found.setdefault(ep.name, []).append(
                    PackagePlugin(ep.name, ep, package, dist.version))
    return found


def clash_message(name, published, path=None):
    """What an operator is told when plugin ``name`` is published more than once."""
    sources = (["the plugin file %s" % path] if path else []) + [str(p) for p in published]
    return ("%d plugins are named %s: %s and %s; uninstall a package, or load a package's "
            "plugin by its Python path (module.Class) instead"
            % (len(sources), name, ", ".join(sources[:-1]), sources[-1]))


def find_package_plugin(name, path=None, is_perl=lambda path: False):
    """The :class:`PackagePlugin` published as ``name``, or None.

    ``path`` is the plugin file of that name found in the plugin directories, if any. Raises
    :class:`~qpsmtpd_tx.plugin.PluginError` naming both when two packages publish the name,
    or a package and a plugin file that is not a Perl plugin (``is_perl(path)``).
    """
    published = package_plugins().get(name, [])
    if not published:
        return None
    clashing_file = path if path is not None and not is_perl(path) else None
    if len(published) > 1 or clashing_file:
        raise PluginError(clash_message(name, published, clashing_file))
    return published[0]


def plugin_source(plugin):
    """The file of the module that defines ``plugin`` (a PackagePlugin), or None."""
    module = plugin.entry_point.value.partition(":")[0].strip()
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None
