"""Where the files shipped beside the code are: alembic migrations and the shipped processes.

The repository keeps them at its top level (``migrations/``, ``processes/``); a wheel
carries them inside the package as ``orchestrator/_resources/…`` (pyproject's
``force-include``). Both are found through ``importlib.resources``, so an installed
package runs from any directory; a checkout or editable install, which has no
``_resources``, uses the top-level folders beside the package.
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path
from typing import Any

PACKAGED = "_resources"


class ResourceError(RuntimeError):
    """The package was installed without its migrations or processes."""


@functools.cache
def _root() -> Path:
    package = files("orchestrator")
    shipped = package / PACKAGED
    # Alembic and the deploy code read real files: an installed package is a directory.
    root = Path(str(shipped)) if shipped.is_dir() else Path(str(package)).parent
    if not (root / "migrations" / "env.py").is_file():
        raise ResourceError(
            f"no migrations found in {root}: the orchestrator package is incomplete "
            "(reinstall it from its wheel or sdist)"
        )
    return root


def migrations_dir() -> Path:
    """The alembic script directory (env.py, versions/)."""
    return _root() / "migrations"


def processes_dir() -> Path:
    """The shipped process files (and any subfolders they use, e.g. templates/)."""
    return _root() / "processes"


def alembic_config(url: str) -> Any:
    """Alembic settings built in code: an installed package has no alembic.ini."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("path_separator", "os")
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg
