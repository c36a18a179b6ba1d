"""Command-line interface: one thin module per command (parse -> config -> library call)."""
