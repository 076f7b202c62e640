from __future__ import annotations

from pathlib import Path

import pytest

from exporter.config import (
    ConfigError,
    ListenAddress,
    parse_auto_bool,
    parse_bool,
    parse_duration,
    parse_listen_address,
    parse_simulate,
)


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


# --- one boolean vocabulary ------------------------------------------------------------------

BOOLEANS = [
    ("true", True),
    ("1", True),
    ("yes", True),
    ("on", True),
    ("TRUE", True),
    (" On ", True),
    ("false", False),
    ("0", False),
    ("no", False),
    ("off", False),
    ("Off", False),
]


@pytest.mark.parametrize(("text", "expected"), BOOLEANS)
def test_every_boolean_word_parses(text: str, expected: bool) -> None:
    assert parse_bool("--collector.kmsg", text) is expected


@pytest.mark.parametrize("text", ["", "maybe", "enabled", "2", "y"])
def test_bad_boolean_lists_the_vocabulary(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--collector\.kmsg: .*true/false, 1/0, yes/no, on/off"):
        parse_bool("--collector.kmsg", text)


@pytest.mark.parametrize(("text", "expected"), [*BOOLEANS, ("auto", True), ("AUTO", True)])
def test_auto_switch_takes_auto_and_the_same_booleans(text: str, expected: bool) -> None:
    value = parse_auto_bool("--collector.pod-attribution", text)
    if text.strip().lower() == "auto":
        assert value == "auto"
    else:
        assert value == ("on" if expected else "off")


def test_bad_auto_switch_names_auto_and_the_booleans() -> None:
    with pytest.raises(ConfigError, match=r"is not auto or a boolean \(true/false"):
        parse_auto_bool("--collector.pod-attribution", "sometimes")


# --- --simulate's value ---------------------------------------------------------------------

SCENARIOS = ("a100-mig", "t4")


@pytest.mark.parametrize("text", ["true", "1", "yes", "on", "TRUE"])
def test_simulate_boolean_true_is_the_default_scenario(text: str) -> None:
    assert parse_simulate("--simulate", text, SCENARIOS, "a100-mig") == "a100-mig"


@pytest.mark.parametrize("text", ["false", "0", "no", "off"])
def test_simulate_boolean_false_is_not_simulating(text: str) -> None:
    assert parse_simulate("--simulate", text, SCENARIOS, "a100-mig") is None


def test_simulate_takes_a_builtin_name_or_a_file(tmp_path: Path) -> None:
    assert parse_simulate("--simulate", "t4", SCENARIOS, "a100-mig") == "t4"
    scenario = tmp_path / "mine.scn"
    scenario.write_text("[system]\n")
    assert parse_simulate("--simulate", str(scenario), SCENARIOS, "a100-mig") == str(scenario)


@pytest.mark.parametrize("text", ["maybe", "", "/no/such/file.scn", "T5"])
def test_bad_simulate_value_lists_the_builtin_scenarios(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_simulate("--simulate", text, SCENARIOS, "a100-mig")
    message = str(caught.value)
    assert message.startswith("--simulate: ")
    assert "a100-mig, t4" in message
    assert "true/false" in message
