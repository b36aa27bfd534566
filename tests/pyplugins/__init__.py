"""An installed-package plugin for the loader tests (loaded by dotted path and as Pkg::Name)."""
