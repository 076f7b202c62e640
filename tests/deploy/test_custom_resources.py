"""ServiceMonitor and PrometheusRule objects validate against the Prometheus Operator's schema.

kubernetes-validate has no schema for custom resources (it warns and passes anything), so
these go through cloudcoil-models-prometheus-operator: pydantic models generated from the
operator's CRDs. The models check types and required fields but ignore keys they do not know,
which the API server would also drop silently (a `honorLabel: true` typo would quietly
restore the exported_namespace problem). So a walk of the object against the models' fields,
by their JSON names, rejects every unknown key as well.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

import pytest
from cloudcoil.models.prometheus_operator import v1
from pydantic import BaseModel, RootModel, ValidationError

from tests.deploy.manifests import VARIANT_NAMES, VARIANTS, Obj, of_kind, one, render

MODELS: dict[str, type[BaseModel]] = {
    "ServiceMonitor": v1.ServiceMonitor,
    "PrometheusRule": v1.PrometheusRule,
}
WITH_CUSTOM = [variant.name for variant in VARIANTS if variant.operator]


def _candidates(annotation: Any) -> list[Any]:
    """The concrete types an annotation allows (Optional/Union/Annotated unwrapped)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _candidates(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [c for arg in typing.get_args(annotation) for c in _candidates(arg)]
    return [annotation]


def unknown_fields(data: Any, annotation: Any, path: str = "") -> list[str]:
    """Paths of keys in `data` that the type `annotation` does not define."""
    best: list[str] | None = None
    for candidate in _candidates(annotation):
        origin = typing.get_origin(candidate)
        found: list[str] | None = None
        if isinstance(candidate, type) and issubclass(candidate, RootModel):
            found = unknown_fields(data, candidate.model_fields["root"].annotation, path)
        elif isinstance(candidate, type) and issubclass(candidate, BaseModel):
            if not isinstance(data, dict):
                continue
            fields = {info.alias or name: info for name, info in candidate.model_fields.items()}
            found = []
            for key, value in data.items():
                where = f"{path}.{key}" if path else key
                if key not in fields:
                    found.append(where)
                else:
                    found += unknown_fields(value, fields[key].annotation, where)
        elif origin in (list, typing.List) and isinstance(data, list):  # noqa: UP006
            (item,) = typing.get_args(candidate)
            found = [p for i, v in enumerate(data) for p in unknown_fields(v, item, f"{path}[{i}]")]
        elif origin in (dict, typing.Dict) and isinstance(data, dict):  # noqa: UP006
            _, value_type = typing.get_args(candidate)
            found = [
                p for k, v in data.items() for p in unknown_fields(v, value_type, f"{path}.{k}")
            ]
        elif not isinstance(data, (dict, list)):
            found = []  # a scalar: its type is pydantic's business
        if found is not None and (best is None or len(found) < len(best)):
            best = found
    return best if best is not None else [f"{path} (unexpected shape)"]


def problems(obj: Obj) -> list[str]:
    model = MODELS[obj["kind"]]
    try:
        model.model_validate(obj)
    except ValidationError as err:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()]
    return [f"unknown field {p}" for p in unknown_fields(obj, model)]


@pytest.mark.parametrize("name", WITH_CUSTOM)
def test_custom_resources_validate(name: str) -> None:
    objs = [obj for obj in render(name) if obj["kind"] in MODELS]
    assert objs
    for obj in objs:
        assert problems(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_only_known_custom_kinds() -> None:
    """A custom kind without a model here would go unchecked."""
    for name in VARIANT_NAMES:
        kinds = {o["kind"] for o in render(name) if o["apiVersion"].startswith("monitoring.")}
        assert kinds <= set(MODELS), f"{name}: {kinds - set(MODELS)} unchecked"
        assert bool(kinds) == (name in WITH_CUSTOM), name


def test_operator_overlay_has_both_kinds() -> None:
    objs = render("prometheus-operator")
    assert of_kind(objs, "ServiceMonitor")
    assert of_kind(objs, "PrometheusRule")


# Negative self-tests.


def service_monitor() -> Obj:
    return copy.deepcopy(one(render("operator+tls+basic-auth"), "ServiceMonitor"))


def prometheus_rule() -> Obj:
    return copy.deepcopy(of_kind(render("prometheus-operator"), "PrometheusRule")[0])


def test_unknown_endpoint_field_fails() -> None:
    obj = service_monitor()
    obj["spec"]["endpoints"][0]["honorLabel"] = True
    assert problems(obj) == ["unknown field spec.endpoints[0].honorLabel"]


def test_unknown_nested_field_fails() -> None:
    obj = service_monitor()
    obj["spec"]["endpoints"][0]["tlsConfig"]["ca"]["secret"]["nmae"] = "x"
    assert problems(obj) == ["unknown field spec.endpoints[0].tlsConfig.ca.secret.nmae"]


def test_snake_case_name_fails() -> None:
    """pydantic also accepts the Python names (populate_by_name); the API server does not."""
    obj = service_monitor()
    endpoint = obj["spec"]["endpoints"][0]
    endpoint["honor_labels"] = endpoint.pop("honorLabels")
    assert problems(obj) == ["unknown field spec.endpoints[0].honor_labels"]


def test_unknown_metadata_field_fails() -> None:
    obj = prometheus_rule()
    obj["metadata"]["label"] = {"a": "b"}
    assert problems(obj) == ["unknown field metadata.label"]


def test_wrong_shape_fails() -> None:
    obj = service_monitor()
    obj["spec"]["endpoints"] = "not-a-list"
    assert any("endpoints" in p for p in problems(obj))


def test_rule_without_expr_fails() -> None:
    obj = prometheus_rule()
    del obj["spec"]["groups"][0]["rules"][0]["expr"]
    assert any("expr" in p for p in problems(obj))


def test_unknown_rule_field_fails() -> None:
    obj = prometheus_rule()
    obj["spec"]["groups"][0]["rules"][0]["severity"] = "critical"  # belongs under labels
    assert problems(obj) == ["unknown field spec.groups[0].rules[0].severity"]


def test_wrong_scheme_fails() -> None:
    obj = service_monitor()
    obj["spec"]["endpoints"][0]["scheme"] = "HTTPS"  # the CRD's enum is lower case
    assert any("scheme" in p for p in problems(obj))
