from __future__ import annotations

import math

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from exporter import metrics
from exporter.render import escape_label_value, format_value, render

PART = {
    metrics.UP.name: ((("0", "GPU-a"), 1.0), (("1", "GPU-b"), 0.0)),
    metrics.ENERGY.name: ((("0", "GPU-a"), 1234.5),),
    metrics.POWER_LIMIT.name: ((("0", "GPU-a", "enforced"), 400.0),),
}


def test_text_format_parses_back_to_the_same_values() -> None:
    text = render([PART])
    families = {family.name: family for family in parse_text(text)}
    up = families["nvidia_gpu_up"]
    assert up.type == "gauge"
    assert [(s.labels, s.value) for s in up.samples] == [
        ({"gpu": "0", "uuid": "GPU-a"}, 1.0),
        ({"gpu": "1", "uuid": "GPU-b"}, 0.0),
    ]
    energy = families["nvidia_gpu_energy_joules"]
    assert energy.type == "counter"
    assert energy.samples[0].name == "nvidia_gpu_energy_joules_total"
    assert energy.samples[0].value == 1234.5


def test_openmetrics_format_is_valid_and_ends_with_eof() -> None:
    text = render([PART], openmetrics=True)
    assert text.endswith("# EOF\n")
    families = {family.name: family for family in parse_om(text)}
    assert families["nvidia_gpu_energy_joules"].type == "counter"
    assert families["nvidia_gpu_power_limit_watts"].samples[0].labels["limit"] == "enforced"


def test_families_follow_catalog_order_and_absent_ones_are_omitted() -> None:
    text = render(
        [{metrics.ENERGY.name: PART[metrics.ENERGY.name]}, {metrics.UP.name: PART[metrics.UP.name]}]
    )
    assert text.index("nvidia_gpu_up") < text.index("nvidia_gpu_energy")
    assert "nvidia_gpu_temperature_celsius" not in text


def test_hostile_label_values_are_escaped() -> None:
    nasty = 'a"b\\c\nd'
    text = render([{metrics.UP.name: (((nasty, "u"), 1.0),)}])
    sample = next(iter(parse_text(text))).samples[0]
    assert sample.labels["gpu"] == nasty
    assert escape_label_value("plain") == "plain"


def test_value_formatting() -> None:
    assert format_value(3.0) == "3"
    assert format_value(0.25) == "0.25"
    assert format_value(float("nan")) == "NaN"
    assert format_value(math.inf) == "+Inf"
    assert format_value(-math.inf) == "-Inf"
    assert format_value(1e20) == "1e+20"


def test_every_catalog_family_has_help_type_and_namespace() -> None:
    names = [family.name for family in metrics.CATALOG]
    assert len(names) == len(set(names))
    for family in metrics.CATALOG:
        assert family.help.endswith(".") or family.help.endswith(")"), family.name
        assert family.name.startswith("nvidia_gpu_")
        assert (family.kind == "counter") == family.name.endswith("_total"), family.name
        if family.group not in ("exporter", "kubernetes") and family.name != "nvidia_gpu_xid_info":
            assert family.labels[:2] == ("gpu", "uuid"), family.name
