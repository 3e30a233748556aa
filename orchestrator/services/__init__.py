"""Application services: what the HTTP API, the console and the CLI ask of the engine
(deploy, authoring, lookup, API keys, rotation, Corezoid operations, repair, sessions…).
They raise the domain errors of ``services.errors``; ``http/errors.py`` gives each its
status code."""
