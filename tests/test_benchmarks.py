"""The speed benchmarks of chapter 8 run (as smoke tests, on tiny shapes) and say what they
measured against; the GPU script calls each of them with ``--device cuda``.

The numbers themselves are measured on a quiet machine and stored in benchmarks/results/; here
only that the scripts work, that the twins they time compute the same function, and that the
stored results name their machine."""
import copy
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


def test_bench_floor_quick(tmp_path):
    """``bench_floor.py`` times the products alone in every arrangement and keeps, per pass, the
    fastest: the floor is never above the per-tap products' own sum."""
    out = run("bench_floor.py", "--quick", "--threads", "1", "--json", str(tmp_path / "f.json"))
    assert "floor/torch" in out
    record = json.loads((tmp_path / "f.json").read_text())
    (row,) = record["rows"]
    (measured,) = row["runs"]
    passes = ("forward", "input gradient", "weight gradient")
    assert set(measured["fastest"]) == set(passes)
    per_tap = sum(measured["median_ms"][f"per tap: {name}"] for name in passes)
    assert measured["floor_ms"] <= per_tap
    assert measured["floor_ratio"] == pytest.approx(measured["floor_ms"] / measured["torch_ms"])
    assert set(row["floor_ratio"]) == {"min", "median", "max"}


@pytest.mark.parametrize("shape", [(2, 5, 4, 6), (1, 3, 7, 5), (3, 16, 8, 4)])
def test_the_floor_arrangements_compute_the_same_convolution(shape):
    """The three arrangements that ``bench_floor.py`` times are the same convolution: the
    per-tap one against torch's, the others against it (``check_arrangements``), and a kernel
    row taken in the wrong order is caught."""
    import bench_floor
    import torch.nn.functional as F
    from scratchnn.nn.fast import shifted_rows
    b = bench_floor.ConvolutionBuffers(shape, torch.device("cpu"))
    runs = bench_floor.arrangements(b)
    assert set(runs) == {"per tap", "kernel rows", "gathered"}
    layout = b.layout
    forward = shifted_rows.output_pixels(runs["per tap"]["forward"](), layout)
    assert torch.allclose(forward, F.conv2d(b.x, b.weight, padding=1), atol=1e-5)
    bench_floor.check_arrangements(b, runs)
    wrong = copy.copy(b)
    wrong.taps = b.taps.flip(0)              # kernel rows (and taps) in the wrong order
    broken = {"per tap": runs["per tap"], "kernel rows": bench_floor.kernel_rows(wrong)}
    with pytest.raises(AssertionError, match="kernel rows"):
        bench_floor.check_arrangements(b, broken)


def test_the_step_estimate_swaps_torch_convolutions_for_their_floors():
    """``step_estimate``: torch's step, minus its 3x3 convolutions' time, plus their floors (the
    medians over the runs), for the layers of batch 32 only."""
    import bench_floor
    from bench_step import Timer
    rows = [{"shape": [32, 48, 48, 8], "runs": [{"torch_ms": t, "floor_ms": f}
                                                for t, f in ((2.0, 3.0), (1.0, 5.0), (4.0, 4.0))]},
            {"shape": [1, 48, 48, 512], "runs": [{"torch_ms": 100.0, "floor_ms": 900.0}]}]
    step = bench_floor.step_estimate(rows, torch.device("cpu"), Timer(torch.device("cpu")),
                                     rounds=1, warmup=0)
    assert step["layers"] == 1
    assert step["torch_convolutions_ms"] == 2.0 and step["floors_ms"] == 4.0
    assert step["estimate_ms"] == pytest.approx(step["torch_step_ms"] + 2.0)
    assert step["ratio"] == pytest.approx(step["estimate_ms"] / step["torch_step_ms"])


def test_each_unet_shape_of_the_floor_is_one_layer_of_the_unet():
    """The step estimate counts each batch-32 shape of ``FLOOR_SHAPES`` once: the U-Net has
    exactly one 3x3 convolution of each of those shapes, and no other with 48 outputs."""
    import bench_floor
    import scratchnn
    network = scratchnn.build_network("unet")
    seen = []
    forward = scratchnn.Conv2d.forward

    def record(self, x):
        if self.kernel_size == (3, 3) and self.out_channels == 48 and self.in_channels >= 48:
            seen.append((x.shape[0], self.in_channels, self.out_channels, x.shape[2]))
        return forward(self, x)

    scratchnn.Conv2d.forward = record
    try:
        with torch.no_grad():
            network.forward(torch.rand(32, 3, 32, 32))
    finally:
        scratchnn.Conv2d.forward = forward
    assert sorted(seen) == sorted(shape for shape in bench_floor.FLOOR_SHAPES if shape[0] == 32)


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
                                  "unet_speed_cpu.json", "unet_speed_cpu_before.json",
                                  "floor_cpu.json"])
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
