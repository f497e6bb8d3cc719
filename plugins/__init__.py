"""clf's default plugins. Each module here is an ordinary pluggy plugin, registered through
the same path as third-party plugins (see ``clf.host.manager.BUILTIN_PLUGINS``)."""
