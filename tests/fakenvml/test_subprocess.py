"""Loading through LD_LIBRARY_PATH in a fresh interpreter, as an exporter would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pynvml")


def _run(lib_dir: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("FAKE_NVML_")}
    full["LD_LIBRARY_PATH"] = str(lib_dir)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_t4_count_via_ld_library_path(lib_dir: Path) -> None:
    code = "import pynvml; pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount())"
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO="t4")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_default_scenario_is_a100_mig(lib_dir: Path) -> None:
    code = (
        "import pynvml; pynvml.nvmlInit(); h = pynvml.nvmlDeviceGetHandleByIndex(0);"
        "print(pynvml.nvmlDeviceGetCount(), pynvml.nvmlDeviceGetName(h))"
    )
    out = _run(lib_dir, code)
    assert out.stdout.strip() == "8 NVIDIA A100-SXM4-80GB", out.stderr


def test_scenario_by_path_and_dir(lib_dir: Path, tmp_path: Path) -> None:
    scn = tmp_path / "two.scn"
    scn.write_text(
        "[system]\ngpu_count = 2\n[gpu *]\nname = Test GPU\nmemory_total_mib = 1024\n"
        "[gpu 1]\nname = Other GPU\n"
    )
    code = (
        "import pynvml; pynvml.nvmlInit();"
        "print([pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(2)])"
    )
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO=str(scn))
    assert out.stdout.strip() == "['Test GPU', 'Other GPU']", out.stderr
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO="two", FAKE_NVML_SCENARIO_DIR=str(tmp_path))
    assert out.stdout.strip() == "['Test GPU', 'Other GPU']", out.stderr


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[system]\ngpu_count = 1\n[gpu 0]\nname = X\nbogus_key = 1\n", 5),
        ("[system]\ngpu_count = 1\n[gpu 3]\nname = X\n", 4),
        ("[system]\n\n# c\ngpu_count = lots\n", 4),
        ("[gpu *]\npower_w = 10 20 30\n", 2),
        ("[system]\n[weird]\n", 2),
    ],
)
def test_bad_scenario_fails_init_cleanly(
    lib_dir: Path, tmp_path: Path, text: str, line: int
) -> None:
    scn = tmp_path / "bad.scn"
    scn.write_text(text)
    code = (
        "import pynvml\ntry:\n    pynvml.nvmlInit()\nexcept pynvml.NVMLError as e:\n"
        "    print('ERR', e.value)\n"
    )
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO=str(scn))
    assert out.stdout.strip() == "ERR 999"
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{scn}:{line}:" in lines[0]


def test_missing_builtin_scenario(lib_dir: Path) -> None:
    code = (
        "import pynvml\ntry:\n    pynvml.nvmlInit()\n"
        "except pynvml.NVMLError as e:\n    print(e.value)"
    )
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO="no-such-scenario")
    assert out.stdout.strip() == "999"
    assert "no-such-scenario.scn" in out.stderr


def test_fault_file_drives_a_subprocess(lib_dir: Path, tmp_path: Path) -> None:
    faults = tmp_path / "faults"
    faults.write_text("lost 1\nfault nvmlDeviceGetTemperature 0 NO_PERMISSION\n")
    code = (
        "import pynvml\npynvml.nvmlInit()\n"
        "h0 = pynvml.nvmlDeviceGetHandleByIndex(0)\n"
        "for f in (lambda: pynvml.nvmlDeviceGetHandleByIndex(1),"
        " lambda: pynvml.nvmlDeviceGetTemperature(h0, 0)):\n"
        "    try:\n        f()\n    except pynvml.NVMLError as e:\n        print(e.value)\n"
    )
    out = _run(lib_dir, code, FAKE_NVML_SCENARIO="h100-nvlink", FAKE_NVML_FAULTS=str(faults))
    assert out.stdout.split() == ["15", "4"], out.stderr


def test_scenario_switch_in_one_process(lib_dir: Path) -> None:
    code = (
        "import os, pynvml\n"
        "for s in ('t4', 'large-16', 'h100-nvlink'):\n"
        "    os.environ['FAKE_NVML_SCENARIO'] = s\n"
        "    pynvml.nvmlInit(); print(pynvml.nvmlDeviceGetCount()); pynvml.nvmlShutdown()\n"
    )
    out = _run(lib_dir, code)
    assert out.stdout.split() == ["1", "16", "8"], out.stderr
