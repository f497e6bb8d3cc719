"""clf's default plugins. Each module here is an ordinary pluggy plugin, registered through
the same path as third-party plugins (see ``clf.plugin_manager.BUILTIN_PLUGINS``)."""
