"""Plumbing every package shares: atomic writes (io), writer locks (locks), typed configs
(config), the command-line error policy (cli), seeds (seeding), HTML/Markdown reports
(reportdoc)."""

from infra.cli import filter_known_warnings as _filter_known_warnings

_filter_known_warnings()  # before any entry point imports CompressAI (infra.cli.KNOWN_WARNINGS)
