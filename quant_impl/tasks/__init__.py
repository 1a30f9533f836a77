"""Classification tasks, one module each, registered by stable name (see ``registry``).

Example:
    >>> from quant_impl.tasks import get_task, task_names
    >>> get_task("trec-6").labels
    ('ABBR', 'DESC', 'ENTY', 'HUM', 'LOC', 'NUM')
"""

import importlib
import pkgutil

from quant_impl.tasks.registry import (
    CUSTOM, KINDS, METRICS, PROFILE_FIELDS, TASK_SETTINGS, TaskSpec, get_task, package_file, register_task, task_names,
)

# Importing a task module registers it: every public module here is imported, so a new task is one new file.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["CUSTOM", "KINDS", "METRICS", "PROFILE_FIELDS", "TASK_SETTINGS", "TaskSpec", "get_task", "package_file",
           "register_task", "task_names"]
