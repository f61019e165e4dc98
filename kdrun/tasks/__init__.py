"""Tasks: what a cell learns to predict and how it is scored (classification, ...).

Each module registers its task with kdrun.tasks.base.register_task; importing this
package imports them all, so a new file is all a new task needs. The engine's loop
asks the task for its metrics; schemes and algorithms never name one.
"""

import importlib
import pkgutil

from kdrun.tasks.base import Selection, Task, TaskConfig, list_tasks, register_task, task_configs, task_for

__all__ = ["Selection", "Task", "TaskConfig", "list_tasks", "register_task", "task_configs",
           "task_for"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base" and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
