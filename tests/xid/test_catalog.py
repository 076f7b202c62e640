"""The bundled Xid catalog."""

from __future__ import annotations

import pytest

from exporter.xid.catalog import XidCatalog, default_catalog


def test_bundled_catalog_counts_match_the_reference() -> None:
    catalog = default_catalog()
    assert len(catalog) == 176
    severities = [info.severity for info in catalog.entries()]
    assert (
        severities.count("critical"),
        severities.count("warning"),
        severities.count("info"),
    ) == (27, 129, 20)
    assert 79 in catalog.critical_codes()
    assert 13 not in catalog.critical_codes()
    info = catalog.get(79)
    assert (info.category, info.severity, info.action) == ("pcie_bus", "critical", "reboot_node")
    assert catalog.get(154).action == "per_message"


def test_unknown_code_is_a_warning_not_an_error() -> None:
    info = default_catalog().get(999)
    assert (info.code, info.severity, info.category) == (999, "warning", "unknown")


def test_bad_severity_is_rejected() -> None:
    text = "code,name,category,severity,action,source\n1,X,driver,fatal,none,test\n"
    with pytest.raises(ValueError, match="fatal"):
        XidCatalog.from_csv(text)
