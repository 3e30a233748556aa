"""The ``orchestrator`` subcommands, by group; ``orchestrator.cli`` parses and dispatches."""
