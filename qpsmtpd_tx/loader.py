"""Finding, loading and registering the plugins named in the ``plugins`` file.

A name is looked up as a file in each plugin directory (``queue/maildir`` → ``<dir>/queue/maildir``
or ``<dir>/queue/maildir.py``) and as a plugin an installed package publishes (an entry point in
the group ``qpsmtpd_tx.plugins``, :mod:`qpsmtpd_tx.packages`; a name found both ways is an
error); ``Pkg::Name`` or a dotted Python path (``mypkg.myplugin`` or ``mypkg.myplugin.MyPlugin``)
loads a plugin from an installed package too. Any problem — not found, import error, no plugin
class, bad arguments, an unknown hook — stops start-up with an error naming the file and line;
every line is tried, so that one run reports all of them.
"""

import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import traceback

from zope.interface.verify import verifyObject

from qpsmtpd_tx import codes
from qpsmtpd_tx.config import ConfigError
from qpsmtpd_tx.hooks import UnknownHookError
from qpsmtpd_tx.interfaces import HOOK_BY_METHOD, IPlugin
from qpsmtpd_tx.packages import PackagePlugin, find_package_plugin
from qpsmtpd_tx.plugin import PluginError


class PluginLoadError(Exception):
    """A plugin line could not be loaded; the message starts with ``file:line:``."""


class PerlPluginError(PluginError):
    """The plugin file found is one of qpsmtpd's Perl plugins, which cannot run here."""

    def __init__(self, path):
        self.path = path
        super().__init__("%s is a Perl plugin (qpsmtpd's); qpsmtpd-tx runs Python plugins" % path)


def perl_plugin_message(name, path):
    """What to tell an operator whose ``plugins`` line ``name`` found only the Perl file ``path``.

    Our own plugin directory is searched first, so there is no Python plugin of that name.
    """
    return ("%s is a Perl plugin (qpsmtpd's); qpsmtpd-tx runs Python plugins and has none named "
            "%s: comment the line out, or port the plugin to Python (README: Writing a plugin)"
            % (path, name))


def escape_plugin_name(name):
    """qpsmtpd's plugin name for logs and notes: ``queue/qmail-queue`` → ``queue::qmail_2dqueue``."""

    def escape(match):
        return "_%02x" % ord(match.group(0))

    # qpsmtpd escapes a digit right after '/', and every character outside [A-Za-z0-9_/].
    escaped = re.sub(r"[^A-Za-z0-9_/]|(?<=/)[0-9]", escape, name)
    return escaped.replace("/", "::")


def find_plugin_file(name, plugin_dirs):
    """The path of plugin ``name`` in the first directory that has it, or None."""
    if name.startswith("/") or ".." in name.split("/"):
        return None
    for directory in plugin_dirs:
        for candidate in (os.path.join(directory, name), os.path.join(directory, name + ".py")):
            if os.path.isfile(candidate):
                return candidate
    return None


_modules = {}


def load_plugin_module(path):
    """Compile and run a plugin file as a module (once per file)."""
    path = os.path.abspath(path)
    if path in _modules:
        return _modules[path]
    modname = "qpsmtpd_tx._loaded." + re.sub(r"\W", "_", path.strip("/"))
    loader = importlib.machinery.SourceFileLoader(modname, path)
    spec = importlib.util.spec_from_loader(modname, loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        loader.exec_module(module)
    except SyntaxError:
        del sys.modules[modname]
        if _looks_like_perl(path):
            raise PerlPluginError(path)
        raise
    except BaseException:
        del sys.modules[modname]
        raise
    _modules[path] = module
    return module


_PERL_MARKERS = re.compile(rb"^\s*(sub\s+\w+|use\s+(strict|warnings|Qpsmtpd)\b|#!.*perl)", re.M)


def _looks_like_perl(path):
    try:
        with open(path, "rb") as f:
            return _PERL_MARKERS.search(f.read(65536)) is not None
    except OSError:
        return False


def plugin_class_of(module):
    """The one class in ``module`` declared to implement IPlugin (defined in that module)."""
    found = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and obj.__module__ == module.__name__ and IPlugin.implementedBy(obj)
    ]
    if len(found) != 1:
        raise PluginError("defines %d plugin classes (need exactly one class implementing IPlugin)"
                          % len(found))
    return found[0]


def _load_package_plugin(published):
    """The plugin class a package publishes: its entry point's class, or its module's one."""
    target = published.entry_point.load()
    if inspect.ismodule(target):
        return plugin_class_of(target)
    if not (inspect.isclass(target) and IPlugin.implementedBy(target)):
        raise PluginError("%s is not a plugin class" % (published,))
    return target


def _import_python_plugin(name):
    """A plugin class from an installed package: dotted module or module.Class."""
    dotted = name.replace("::", ".")
    try:
        return plugin_class_of(importlib.import_module(dotted))
    except ImportError as first_error:
        modname, _, attr_name = dotted.rpartition(".")
        if not modname:
            raise
        try:
            module = importlib.import_module(modname)
        except ImportError:
            raise first_error
        cls = getattr(module, attr_name, None)
        if cls is None or not IPlugin.implementedBy(cls):
            raise PluginError("%s is not a plugin class" % dotted)
        return cls


def find_plugin(name, plugin_dirs):
    """``(path, published)``: plugin ``name``'s file in ``plugin_dirs`` and the
    :class:`~qpsmtpd_tx.packages.PackagePlugin` publishing it, either None (``published``
    wins over a Perl file). Raises PluginError if the name is taken twice."""
    path = find_plugin_file(name, plugin_dirs)
    return path, find_package_plugin(name, path, _looks_like_perl)


#: the plugin directories of the plugin files being loaded, innermost last
_dirs_in_use = []


def plugin_dirs_in_use():
    """The plugin directories the plugin file now being loaded was found in, or None."""
    return _dirs_in_use[-1] if _dirs_in_use else None


def resolve_plugin_class(name, plugin_dirs):
    """(class, source) for a plugin name; follows ``ALIAS_OF`` in alias files.

    ``source`` is the file path or the Python path it came from, or the
    :class:`~qpsmtpd_tx.packages.PackagePlugin` that publishes it.
    """
    seen = []
    while True:
        path, published = find_plugin(name, plugin_dirs)
        if published is not None:
            return _load_package_plugin(published), published
        if path is None:
            if "::" in name or "." in name:
                return _import_python_plugin(name), name
            raise PluginError("plugin not found (looked in %s, and among the installed "
                              "packages' plugins)" % ", ".join(plugin_dirs))
        try:
            # a plugin extending another (qpsmtpd_tx.extend) looks it up in the same directories
            _dirs_in_use.append(plugin_dirs)
            module = load_plugin_module(path)
        except PerlPluginError:
            raise PluginError(perl_plugin_message(name, path))
        finally:
            _dirs_in_use.pop()
        alias = getattr(module, "ALIAS_OF", None)
        if alias is None:
            return plugin_class_of(module), path
        seen.append(name)
        if alias in seen:
            raise PluginError("alias loop: %s" % " -> ".join(seen + [alias]))
        name = alias


def load_plugin_lines(server, plugin_lines, plugin_dirs, registry=None, plugins=None):
    """Instantiate, initialise and register every plugin line: ``(plugins, problems)``.

    Hooks go into ``registry`` (default ``server.hooks``); each plugin is appended to
    ``plugins`` (default a new list) as soon as it is initialised, so the caller has the ones
    to stop. Goes on past failures: ``problems`` has one ``file:line: plugin NAME: message``
    string per line that failed, so that a whole config is checked in one run.
    """
    if registry is None:
        registry = server.hooks
    if plugins is None:
        plugins = []
    problems = []
    for line in plugin_lines:
        try:
            plugins.append(_load_plugin_line(server, line, plugin_dirs, registry))
        except PluginLoadError as e:
            problems.append(str(e))
    return plugins, problems


def _load_plugin_line(server, line, plugin_dirs, registry):
    where = "%s:%s" % (line.path, line.lineno)
    label = line.name + (":" + line.instance if line.instance else "")
    try:
        cls, source = resolve_plugin_class(line.name, plugin_dirs)
        plugin = cls()
        plugin.name = escape_plugin_name(label)
        plugin.path = label
        plugin.args = list(line.args)
        plugin.server = server
        plugin.source = str(source)
        if line.timeout is not None:
            plugin.hook_timeout = line.timeout
        verifyObject(IPlugin, plugin)
        plugin.init(list(line.args))
        _register_hook_methods(registry, plugin)
        plugin.register(registry)
    except (PluginError, UnknownHookError, ConfigError) as e:
        raise PluginLoadError("%s: plugin %s: %s" % (where, label, e))
    except SyntaxError as e:
        raise PluginLoadError("%s: plugin %s: syntax error in %s line %s: %s"
                              % (where, label, e.filename, e.lineno, e.msg))
    except Exception as e:
        detail = traceback.format_exc(limit=-3)
        raise PluginLoadError("%s: plugin %s failed to load: %s: %s\n%s"
                              % (where, label, type(e).__name__, e, detail))
    if isinstance(source, PackagePlugin):
        server.log(codes.LOGINFO, "plugin %s comes from %s" % (label, source))
    elif source != line.name and os.path.basename(str(source)) != os.path.basename(line.name):
        server.log(codes.LOGINFO, "plugin %s is an alias of %s" % (label, source))
    return plugin


def _register_hook_methods(registry, plugin):
    for attr_name in dir(type(plugin)):
        if not attr_name.startswith("hook_"):
            continue
        hook = HOOK_BY_METHOD.get(attr_name)
        if hook is None:
            raise UnknownHookError("invalid hook method %s (no hook %r)"
                                   % (attr_name, attr_name[5:]))
        registry.register(hook, plugin, getattr(plugin, attr_name))
