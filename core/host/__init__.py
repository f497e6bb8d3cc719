"""Plugins: loading them (built-in, installed, named on the command line), checking their
hook implementations, the registries they fill, listing them, and scaffolding new ones."""
