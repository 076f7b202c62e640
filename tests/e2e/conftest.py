"""Fixtures of the paging tests: a started Stack per test, its logs on failure.

Each test gets its own processes: every test injects a fault that keeps its alert firing
(a GPU that fell off the bus stays lost), so a shared Prometheus or Alertmanager would carry
one test's alerts into the next. A stack starts in about 3 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import NodeSpec, Stack
from tests.tools import require_tool

StackFactory = Callable[..., Stack]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failing test's report carries the logs of Prometheus, Alertmanager and the exporters."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for stack in getattr(item, "_e2e_stacks", []):
        report.sections.append((f"e2e logs ({report.when})", stack.logs()))


@pytest.fixture
def make_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StackFactory]:
    """`make_stack([NodeSpec(...), ...], scrape_interval=..., shorten={...})` -> a started Stack.

    Everything is stopped in the finalizer (SIGTERM, SIGKILL after 10 s).
    """
    require_tool("prometheus")
    require_tool("prometheus-alertmanager")
    stacks: list[Stack] = []
    request.node._e2e_stacks = stacks

    def make(nodes: list[NodeSpec], **options: object) -> Stack:
        stack = Stack(tmp_path / f"stack{len(stacks)}", nodes, **options)  # type: ignore[arg-type]
        stacks.append(stack)
        stack.start()
        return stack

    yield make
    for stack in stacks:
        stack.stop()
