"""One module per CLI subcommand: argument definitions and a handler that calls the library."""
