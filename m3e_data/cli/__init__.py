"""The `m3e-data` command line: one module per command group, plus console output and error handling."""
