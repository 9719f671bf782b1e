"""The core every method builds on: the method registry, the one module that runs passes, the
calling convention (`explain`), fills and the process's CPU runtime settings."""
