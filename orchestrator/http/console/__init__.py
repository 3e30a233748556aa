"""The web console (Corezoid's View mode for operators), mounted at /console: its routes
are in ``routes``; this package file stays empty so that its modules import each other
without a cycle through it."""
