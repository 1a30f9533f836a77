"""tox plugin of this project (tox 4 loads ``toxfile.py`` from the project root): lets uv see pip's find-links.

tox.ini requires tox-uv, so uv creates the environments and installs into them: 80 s with pip against 6 s with uv for
the same packages and versions, measured on a Zen 4 VM of this project (README "Quick start"). uv does not read pip's
configuration, though. Where pip is told to look in a folder of wheels (``PIP_FIND_LINKS`` or ``find-links`` in a
pip.conf), as on this project's machines, whose CPU build of torch lies in one, uv must look there too: from PyPI the
same ``torch<=2.13.0`` is a CUDA build of several GB. So before any environment is made, ``UV_FIND_LINKS`` gets pip's
find-links, unless it is set already; tox.ini passes it on to uv.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

try:
    from tox.plugin import impl
except ImportError:  # imported without tox (tests/test_toxfile.py runs in the test environment)
    def impl(hook: Any) -> Any:
        return hook


def pip_find_links(environ: dict[str, str] | os._Environ = os.environ) -> list[str]:
    """The find-links pip would use: ``PIP_FIND_LINKS``, else every ``*.find-links`` of ``pip config list``."""
    if environ.get("PIP_FIND_LINKS"):
        return environ["PIP_FIND_LINKS"].split()
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):  # no pip here: then pip has no find-links either
        return []
    links: list[str] = []
    for line in listed.splitlines():  # key='value', the value a space-separated list as in pip.conf
        key, _, value = line.partition("=")
        if key.endswith(".find-links") and value:
            links += [link for link in " ".join(shlex.split(value)).split() if link not in links]
    return links


@impl
def tox_add_core_config(core_conf: Any, state: Any) -> None:  # noqa: ARG001 (tox's hook signature)
    share_find_links(os.environ)


def share_find_links(environ: dict[str, str] | os._Environ) -> None:
    """Set ``UV_FIND_LINKS`` in ``environ`` to pip's find-links (comma-separated, as uv reads it), unless it is set."""
    if "UV_FIND_LINKS" not in environ:
        links = pip_find_links(environ)
        if links:
            environ["UV_FIND_LINKS"] = ",".join(links)
