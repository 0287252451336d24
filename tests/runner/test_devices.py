"""Cycles devices: the real probe (CPU only here), the choice rules, and the argv they make.

There is no GPU on the test machine: GPU lists are built by hand for the choice rules; the
"GPU asked for, none there" path runs for real (here and in test_render_backends.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from framefarm.cli import main
from runner.blender import BlenderBackend, build_render_argv
from runner.devices import (
    CyclesDevice,
    DeviceChoice,
    DeviceUnavailable,
    choose_device,
    format_cpu_list,
    parse_cpu_list,
    probe_devices,
    share_cpus,
    split_for_slots,
)

CPU = CyclesDevice("CPU", "AMD EPYC", "CPU")
RTX = [CyclesDevice("CUDA", f"RTX {i}", f"CUDA_RTX_{i}_0000:0{i}:00") for i in range(2)]
OPTIX = [CyclesDevice("OPTIX", d.name, d.id.replace("CUDA", "OPTIX")) for d in RTX]


@pytest.mark.blender
@pytest.mark.parametrize("backend_name", ["bpy_backend", "blender_exe_backend"])
def test_probe_lists_the_cpu_of_both_blenders(
    request: pytest.FixtureRequest, backend_name: str, blender_home: Path
) -> None:
    backend: BlenderBackend = request.getfixturevalue(backend_name)
    devices = probe_devices(backend, blender_home)
    assert [d.type for d in devices] == ["CPU"]  # no GPU on this machine
    assert devices[0].id == "CPU" and devices[0].name


def test_without_flags_the_best_gpu_type_is_used_else_the_cpu() -> None:
    assert choose_device([CPU]) == DeviceChoice("CPU")
    assert choose_device([CPU, *RTX]) == DeviceChoice("CUDA", tuple(d.id for d in RTX))
    assert choose_device([CPU, *RTX, *OPTIX]).device_type == "OPTIX"


def test_force_cpu_wins_over_a_gpu() -> None:
    assert choose_device([CPU, *OPTIX], force_cpu=True) == DeviceChoice("CPU")
    with pytest.raises(DeviceUnavailable, match="not both"):
        choose_device([CPU, *OPTIX], force_cpu=True, gpu="OPTIX")


def test_gpu_picks_a_type_and_devices_by_number_or_id() -> None:
    assert choose_device([CPU, *RTX, *OPTIX], gpu="cuda") == DeviceChoice(
        "CUDA", tuple(d.id for d in RTX)
    )
    assert choose_device([CPU, *RTX], gpu="CUDA:1").ids == (RTX[1].id,)
    assert choose_device([CPU, *RTX], gpu=f"CUDA:{RTX[0].id}").ids == (RTX[0].id,)
    assert choose_device([CPU, *RTX], gpu="CUDA:1").label == "CUDA (RTX 1)"


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ("CUDA", "--gpu CUDA: Blender found no CUDA device (found: CPU AMD EPYC); check the GPU "
                 "driver, or render on the CPU with --force-cpu-rendering"),
        ("TPU", "--gpu 'TPU': unknown GPU type; use one of OPTIX, CUDA, HIP, ONEAPI, METAL"),
    ],
)  # fmt: skip
def test_gpu_that_is_not_there_is_an_error(gpu: str, message: str) -> None:
    with pytest.raises(DeviceUnavailable) as caught:
        choose_device([CPU], gpu=gpu)
    assert str(caught.value).startswith(message)


def test_a_missing_gpu_number_lists_the_ones_there() -> None:
    with pytest.raises(DeviceUnavailable, match=r"no CUDA device '7'; CUDA devices: 0: RTX 0"):
        choose_device([CPU, *RTX], gpu="CUDA:7")


def test_slots_share_out_the_gpus() -> None:
    both = choose_device([CPU, *RTX])
    first, second = split_for_slots(both, 2)
    assert (first.ids, second.ids) == ((RTX[0].id,), (RTX[1].id,))
    assert split_for_slots(DeviceChoice("CPU"), 3) == [DeviceChoice("CPU")] * 3
    assert split_for_slots(both, 1) == [both]


def test_render_argv_names_the_device_and_its_gpus(bpy_backend: BlenderBackend) -> None:
    argv = build_render_argv(
        bpy_backend,
        blend_file=Path("/j/shot.blend"),
        output_dir=Path("/j/out"),
        frames=[1],
        device="OPTIX",
        device_ids=["OPTIX_A", "OPTIX_B"],
    )
    assert argv[-4:] == ["--device", "OPTIX", "--gpu-ids", "OPTIX_A,OPTIX_B"]
    cpu = build_render_argv(
        bpy_backend, blend_file=Path("/j/s.blend"), output_dir=Path("/o"), frames=[1]
    )
    assert cpu[-2:] == ["--device", "CPU"]


@pytest.mark.blender
def test_a_runner_asked_for_a_gpu_it_lacks_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    code = main(
        ["runner", "--manager", "http://127.0.0.1:9", "--api-key", "ff_x",
         "--blender", sys.executable, "--gpu", "OPTIX", "--workdir", str(tmp_path / "w")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2, err
    assert "error: --gpu OPTIX: Blender found no OPTIX device (found: CPU " in err


def test_slots_share_out_the_cpus_in_runs_of_neighbours() -> None:
    assert share_cpus(range(8), 3) == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert share_cpus((0, 1), 2) == [(0,), (1,)]
    assert share_cpus((0, 1), 3) == [(), (), ()]  # more slots than CPUs: not pinned
    assert share_cpus((), 1) == [()]
    first, second = split_for_slots(DeviceChoice("CPU"), 2, (0, 1, 2, 3))
    assert (first.cpus, second.cpus) == ((0, 1), (2, 3))
    assert first.label == "CPU on CPUs 0-1"
    gpus = split_for_slots(DeviceChoice("CUDA", ("a", "b")), 2, (0, 1))
    assert [(g.ids, g.cpus) for g in gpus] == [(("a",), (0,)), (("b",), (1,))]


def test_cpu_lists_read_and_write_as_linux_writes_them() -> None:
    assert parse_cpu_list("0-3,8,10-11") == (0, 1, 2, 3, 8, 10, 11)
    assert parse_cpu_list(" 2 , 0") == (0, 2)
    assert format_cpu_list((0, 1, 2, 3, 8, 10, 11)) == "0-3,8,10-11"
    for bad in ("", "a", "3-1", "1-", "-2", "0,,1"):
        with pytest.raises(ValueError, match="CPU list"):
            parse_cpu_list(bad)
