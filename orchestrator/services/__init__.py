"""Application services: what the HTTP API, the console and the CLI ask of the engine
(tasks and processes, callbacks, deploy, authoring, lookup, API keys and sessions,
rotation, Corezoid operations, repair, health). They raise the domain errors of
``services.errors``; ``http/errors.py`` gives each its status code.

What the HTTP layer calls is a coroutine that runs its own database work
(``Runtime.run_db``): ``http/`` awaits services and never touches the runtime."""
