from __future__ import annotations

import pytest

from exporter.config import ConfigError, ListenAddress, parse_duration, parse_listen_address


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("500ms", 0.5), ("1m", 60.0), ("2", 2.0), (" 1.5s ", 1.5), ("1h", 3600.0)],
)
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert parse_duration("--collection.interval", text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 parsecs", "-1s", "0s", "2h", "10us"])
def test_bad_durations_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--collection\.interval: "):
        parse_duration("--collection.interval", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":9445", ListenAddress("", 9445)),
        ("0.0.0.0:80", ListenAddress("0.0.0.0", 80)),
        ("[::1]:9445", ListenAddress("::1", 9445)),
        ("localhost:0", ListenAddress("localhost", 0)),
    ],
)
def test_listen_addresses(text: str, expected: ListenAddress) -> None:
    assert parse_listen_address("--web.listen-address", text) == expected


@pytest.mark.parametrize("text", ["9445", ":http", "host:", ":70000", ""])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--web\.listen-address: "):
        parse_listen_address("--web.listen-address", text)


def test_listen_address_prints_back() -> None:
    assert str(ListenAddress("::1", 9445)) == "[::1]:9445"
    assert str(ListenAddress("", 9445)) == ":9445"
