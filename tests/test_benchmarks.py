"""The speed benchmarks of chapter 8 run (as smoke tests, on tiny shapes) and say what they
measured against; the GPU script calls each of them with ``--device cuda``.

The numbers themselves are measured on a quiet machine and stored in benchmarks/results/; here
only that the scripts work, that the twins they time compute the same function, and that the
stored results name their machine."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def run(script, *args):
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_bench_conv_quick(tmp_path):
    out = run("bench_conv.py", "--quick", "--forms", "--threads", "1", "--json",
              str(tmp_path / "c.json"))
    assert "matmul peak" in out
    record = json.loads((tmp_path / "c.json").read_text())
    forms = [row["form"] for row in record["rows"]]
    assert "unfold" in forms and any(form.startswith("shifted rows (") for form in forms)
    assert all(row["max_forward_difference"] < 1e-4 for row in record["rows"])
    # --forms times every form of the shifted rows, each against torch.nn in its own loop.
    for row in record["rows"]:
        if row["form"].startswith("shifted rows"):
            assert set(row["forced_ratio"]) == {"per tap", "wide", "gathered"}


def test_bench_conv_pieces_quick(tmp_path):
    """``--pieces`` times the forward pass in one piece and in pieces, and says which form the
    package runs at each shape (the tiny quick shape: one piece, below ``PIECES_FROM_ROWS``)."""
    out = run("bench_conv.py", "--quick", "--pieces", "--threads", "1", "--json",
              str(tmp_path / "p.json"))
    assert "fastest:" in out
    record = json.loads((tmp_path / "p.json").read_text())
    (row,) = record["rows"]
    assert set(row["median_ms"]) == {"one piece", "pieces of 256"}
    assert row["package_runs"] == "one piece" and row["fastest"] in row["median_ms"]


def test_bench_unet_quick(tmp_path):
    out = run("bench_unet.py", "--quick", "--threads", "1", "--json", str(tmp_path / "u.json"))
    assert "matmul peak" in out and "worst ratio" in out
    record = json.loads((tmp_path / "u.json").read_text())
    assert record["machine"]["cpu"] and isinstance(record["machine"]["cpu_flags"], list)
    # the anchor is the faster of torch's two memory formats, and the ratio is against it
    for row in record["step"] + [record["inference"]]:
        torch_forms = {name: value for name, value in row["median_ms"].items()
                       if name.startswith("torch")}
        assert set(torch_forms) == {"torch NCHW", "torch channels-last"}
        assert row["anchor"] == min(torch_forms, key=torch_forms.get)
        assert row["ratio"] == pytest.approx(row["median_ms"]["scratchnn"]
                                             / torch_forms[row["anchor"]])
    assert record["inference"]["max_difference"] < 1e-4   # the same function
    assert set(record["met"]) == {"conv", "step", "inference"}


def test_scaling_quick(tmp_path):
    out = run("scaling.py", "--quick", "--json", str(tmp_path / "s.json"))
    assert "seed000" in out and "unet" in out
    record = json.loads((tmp_path / "s.json").read_text())
    assert len(record["steps"]) == 2 and len(record["memory"]) == 2


def test_bench_step_times_against_the_transposed_twin():
    out = run("bench_step.py", "--batches", "4", "--rounds", "1", "--warmup", "0",
              "--no-profile", "--threads", "1")
    assert "ConvTranspose2d twin" in out and "same network" in out


def test_flop_counts_match_the_architectures():
    """seed000 per 32x32 image: conv 3->100 k2 on 16x16, conv 100->100 k2 on 8x8, and the two
    fused upsampling blocks: 16 taps on the padded small maps (9x9 and 17x17)."""
    import scaling
    multiply_adds = (256 * 4 * 3 * 100 + 64 * 4 * 100 * 100 + 81 * 16 * 100 * 100
                     + 289 * 16 * 100 * 3)
    assert scaling.step_flops("seed000", 1) == 3 * 2 * multiply_adds


def test_gpu_script_runs_every_benchmark_on_cuda():
    script = (BENCHMARKS / "gpu.sh").read_text()
    for name in ("bench_step.py", "bench_conv.py", "scaling.py", "bench_unet.py"):
        assert f"benchmarks/{name} --device cuda" in script


@pytest.mark.parametrize("name", ["cpu.json", "conv_cpu.json", "conv_cpu_passive.json",
                                  "scaling_cpu.json", "conv_xeon.json", "pieces_cpu.json",
                                  "unet_speed_cpu.json", "unet_speed_cpu_before.json"])
def test_stored_results_name_their_machine(name):
    path = BENCHMARKS / "results" / name
    if not path.exists():
        pytest.skip(f"{name} not measured yet")
    record = json.loads(path.read_text())
    machines = [run["machine"] for run in record["runs"]] if "runs" in record \
        else [record["machine"]]
    for machine in machines:
        assert machine["cpu"] and machine["torch"]
        assert machine.get("device", "cpu") == "cpu" or "gpu" in machine


@pytest.mark.parametrize("name", ["conv_cpu.json", "conv_xeon.json"])
def test_the_rule_picks_the_fastest_form_on_every_measured_cpu(name):
    """Issue 23: a rule that picks a form must hold on the CPUs it was measured on. In each
    stored ``bench_conv.py --forms`` record (a 2-core AMD EPYC's, a 2-core Intel Xeon's), the
    form that ``rows_form`` picks *now* at each shape took at most 5% longer than the fastest of
    the three forms, each forced in turn; a rule changed later, or a record from another CPU
    that disagrees, fails here."""
    from scratchnn.nn.fast.shifted_rows import rows_form, rows_layout
    record = json.loads((BENCHMARKS / "results" / name).read_text())
    checked = 0
    for row in record["rows"]:
        if "forced_ratio" not in row:
            continue
        batch, c, o, size = row["shape"]
        picked = rows_form(c, o, rows_layout((batch, c, size, size), (3, 3), (1, 1), (1, 1)))
        forced = row["forced_ratio"]
        assert forced[picked] <= 1.05 * min(forced.values()), (name, row["shape"], picked, forced)
        checked += 1
    assert checked >= 8


def test_cuda_benchmarks_only_with_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "bench_conv.py"), "--device",
                             "cuda"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no CUDA device" in result.stderr


def test_peak_memory_is_the_child_process_own():
    """``scaling.peak_memory`` measures in a fresh process; on Linux ``ru_maxrss`` remembers the
    parent's peak from before ``exec``, which once hid every growth (read as 0 MiB)."""
    if not Path("/proc/self/status").exists():
        pytest.skip("VmHWM is Linux's")
    parent_peak = torch.ones(400 * 2 ** 20 // 4)              # 400 MiB touched in this process
    code = (f"import sys; sys.path.insert(0, {str(BENCHMARKS)!r}); import scaling, torch; "
            "before = scaling.peak_resident_bytes(); x = torch.ones(100 * 2 ** 20 // 4); "
            "print((scaling.peak_resident_bytes() - before) / 2 ** 20)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)
    del parent_peak
    assert 90 < float(result.stdout.split()[-1]) < 200
