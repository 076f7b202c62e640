"""Every rendered Kubernetes object validates strictly against the real schemas, 1.29 to newest.

kubernetes-validate (PyPI) ships the OpenAPI-derived JSON schemas of each Kubernetes release;
`strict` rejects fields the schema does not know (a typo such as `readOnlyRootFileSystem`
would otherwise be dropped by the API server without a word). Its command line only *warns*
and exits 0 when it has no schema for a kind, which is also what happens to a removed API
(apps/v1beta1): here that is a failure for every core kind. Custom resources
(ServiceMonitor, PrometheusRule) are checked against the Prometheus Operator's models in
test_custom_resources.py instead.

Each distinct object is validated once per version, however many variants contain it.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from packaging.version import Version

from tests.deploy.manifests import (
    VARIANT_NAMES,
    Obj,
    Variant,
    is_custom,
    render,
    render_variant_text,
)

OLDEST = Version("1.29")

# kubernetes-validate re-reads and re-parses a 1.8 MB definitions file on every call (about
# 10 ms); the schema files never change, so read each once. Only speed depends on this: if a
# release renames the function, the tests stay correct and get slower.
if hasattr(kubernetes_validate.utils, "schema_contents"):
    kubernetes_validate.utils.schema_contents = functools.cache(
        kubernetes_validate.utils.schema_contents
    )


def versions() -> list[str]:
    """Kubernetes versions with schemas in kubernetes-validate, from 1.29 to the newest."""
    shipped = {Version(v) for v in kubernetes_validate.utils.all_versions()}
    return [str(v) for v in sorted(shipped) if v >= OLDEST]


VERSIONS = versions()


def validate(obj: Obj, version: str) -> None:
    """Strict validation; no schema for the kind is an error, as is a silent older schema."""
    try:
        used = kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as err:
        raise AssertionError(f"no schema: {err.message}") from None
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(part) for part in err.path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata'].get('name')} fails Kubernetes {version}: "
            f"{path}: {err.message}"
        ) from None
    wanted = ".".join(version.split(".")[:2])
    assert used == wanted, f"validated against {used}, not {wanted}"


@functools.cache
def _validated(text: str, version: str) -> None:
    validate(json.loads(text), version)


def validate_once(obj: Obj, version: str) -> None:
    _validated(json.dumps(obj, sort_keys=True), version)


def test_versions_cover_129_to_newest() -> None:
    assert VERSIONS[0] == "1.29.0"
    assert len(VERSIONS) >= 9, VERSIONS  # 1.29 .. 1.37 with kubernetes-validate 1.37.0
    newest = max(Version(v) for v in kubernetes_validate.utils.all_versions())
    assert VERSIONS[-1] == str(newest)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_core_objects_validate_strictly(name: str, version: str) -> None:
    core = [obj for obj in render(name) if not is_custom(obj)]
    assert core
    for obj in core:
        validate_once(obj, version)


# Negative self-tests: the validator as used above does reject what it must.


def daemonset() -> Obj:
    objs = render("base")
    found: Obj = next(obj for obj in objs if obj["kind"] == "DaemonSet")
    return copy.deepcopy(found)


def test_unknown_field_fails() -> None:
    obj = daemonset()
    container: dict[str, Any] = obj["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # the classic typo
    with pytest.raises(AssertionError, match="readOnlyRootFileSystem"):
        validate(obj, VERSIONS[-1])


def test_wrong_type_fails() -> None:
    obj = daemonset()
    obj["spec"]["template"]["spec"]["tolerations"] = {"operator": "Exists"}  # not a list
    with pytest.raises(AssertionError, match="fails Kubernetes"):
        validate(obj, VERSIONS[0])


def test_removed_api_fails() -> None:
    obj = daemonset()
    obj["apiVersion"] = "extensions/v1beta1"  # DaemonSet's API until 1.16
    with pytest.raises(AssertionError, match="no schema"):
        validate(obj, VERSIONS[0])


def test_field_newer_than_the_oldest_version_fails_there() -> None:
    """A field from a later release must fail on 1.29, or the range would prove nothing."""
    obj = daemonset()
    spec = obj["spec"]["template"]["spec"]
    spec["securityContext"]["appArmorProfile"] = {"type": "RuntimeDefault"}  # GA in 1.30
    with pytest.raises(AssertionError, match="appArmorProfile"):
        validate(obj, "1.29.0")
    validate(obj, "1.30.0")


def test_basic_auth_before_tls_is_rejected_loudly() -> None:
    """Components apply in the order listed; docs/install.md says tls, then basic-auth. The
    other order leaves probes with both tcpSocket and a port-less httpGet, which must not
    pass validation (the API server refuses it too) rather than deploy half-configured."""
    variant = Variant(
        "reversed", ("overlays/prometheus-operator",), ("overlays/basic-auth", "overlays/tls")
    )
    objs = [doc for doc in yaml.safe_load_all(render_variant_text(variant)) if doc]
    daemonset = next(obj for obj in objs if obj["kind"] == "DaemonSet")
    with pytest.raises(AssertionError, match="port"):
        validate(daemonset, VERSIONS[-1])
