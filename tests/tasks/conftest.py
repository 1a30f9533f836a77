"""Each task's test module names its task as ``TASK``; ``frame`` is its loaded pool, read with sockets disabled
(loading must need no network). A module whose data package is missing skips, naming the install line."""

from __future__ import annotations

import socket

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        task = getattr(item.module, "TASK", None)
        if task is not None and task.missing_package():
            item.add_marker(pytest.mark.skip(reason=task.missing_package()))


@pytest.fixture(scope="module")
def frame(request: pytest.FixtureRequest):
    task = request.module.TASK

    def no_network(*args, **kwargs):
        raise AssertionError(f"the {task.name} loader tried to open a socket")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", no_network)
        return task.load()
