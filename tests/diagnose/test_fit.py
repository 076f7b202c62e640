"""--need-memory: which GPUs and MIG devices a model fits on, now (free) and by total."""

from __future__ import annotations

# h100-nvlink: 81559 MiB per GPU, used = 50000 + 15000 sin(...) MiB plus the process (60000 on
# GPUs 0-3, 55000 on 4-7): at the frozen time free memory is about 21.5 GiB on 0-3, 26.4 on 4-7.
IDLE_GPU_4 = "[gpu 4]\nprocess = none\nmemory_used_mib = 1000\n"


def test_fits_now_on_the_free_gpu_and_by_total_on_all(node, diagnose):
    run = diagnose(
        *node.args("--simulate", node.scenario(IDLE_GPU_4), "--need-memory", "40GiB", "--json")
    )
    fits = run.one("model.fits")
    assert fits["level"] == "passed"
    assert fits["evidence"] == ("40GiB (40.0 GiB) fits now on GPU 4; by total memory on GPUs 0-7")


def test_fits_by_total_only_when_every_gpu_is_busy(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--need-memory", "70G", "--json"))
    fits = run.one("model.fits")
    assert fits["level"] == "warning"
    assert fits["evidence"].startswith(
        "70G (70.0 GiB) fits by total memory on GPUs 0-7, but none has it free now (most free: "
    )
    assert run.rc == 1


def test_model_that_does_not_fit(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--need-memory", "96000MiB", "--json"))
    fits = run.one("model.fits")
    assert fits["level"] == "failed"
    assert fits["evidence"] == (
        "96000MiB (93.8 GiB) fits on no GPU or MIG device: the largest is GPU 0 with 79.6 GiB"
    )
    assert "Shard the model" in fits["next_step"]
    assert run.rc == 2


def test_mig_devices_are_units_of_their_own(node, diagnose):
    # a100-mig: GPU 6 has 7x 1g.10gb (9.5 GiB), GPU 7 one 3g.40gb (39.2 GiB) and two 2g.20gb
    run = diagnose(*node.args("--simulate", "a100-mig", "--need-memory", "15GiB", "--json"))
    evidence = run.one("model.fits")["evidence"]
    assert evidence.split("; by total memory on ", 1)[1] == (
        "GPUs 0-5, GPU 7 MIG 2g.20gb (GI 3), GPU 7 MIG 2g.20gb (GI 5), GPU 7 MIG 3g.40gb (GI 2)"
    )
    assert "1g.10gb" not in evidence
    assert "GPU 6" not in evidence


def test_without_the_option_there_is_no_fit_check(node, diagnose):
    run = diagnose(*node.args("--simulate", node.scenario(), "--json"))
    assert run.findings("model.fits") == []
