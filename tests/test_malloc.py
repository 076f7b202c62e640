from __future__ import annotations

import pytest

from exporter import malloc


def test_caps_the_arenas_unless_the_environment_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert malloc.cap_malloc_arenas() is True  # glibc (the image and CI)
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert malloc.cap_malloc_arenas() is False
