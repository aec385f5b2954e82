"""Plumbing every package shares: atomic writes and locks (io), typed configs (config), the
command-line error policy (cli), seeds (seeding), HTML/Markdown reports (reportdoc)."""
