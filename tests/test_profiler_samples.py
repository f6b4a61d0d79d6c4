import itertools
from pathlib import Path

import pytest

from berth.profiler.replay import ReplayBackend
from berth.profiler.samples import BadRecording, from_json, read_recording, to_json
from tests.recordings import busy_run, write


def test_a_sample_survives_its_json_round_trip() -> None:
    sample = busy_run(1, 250.0, devices=2, pod="train-w0")[1]
    assert from_json(to_json(sample)) == sample


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("not json", "not JSON"),
        ('{"time": 1}', "'devices' list"),
        ('{"time": 1, "devices": [{"index": 0, "watts": 3}]}', "unknown field(s) ['watts']"),
        ('{"time": "x", "devices": []}', "time must be a number"),
    ],
)
def test_a_malformed_recorded_sample_is_refused_saying_where(line: str, says: str) -> None:
    with pytest.raises(BadRecording, match=r"rec\.jsonl:1") as exc:
        read_recording([line], "rec.jsonl")
    assert says in str(exc.value)


def test_a_recording_whose_time_goes_back_is_refused() -> None:
    run = busy_run(2, 100.0)
    with pytest.raises(BadRecording, match="must increase"):
        read_recording([to_json(run[1]), to_json(run[0])], "rec")


def test_replay_serves_the_sample_in_force_shifted_to_now(tmp_path: Path) -> None:
    clock = [100.0]
    backend = ReplayBackend(write(tmp_path / "r.jsonl", busy_run(4, 200.0)), lambda: clock[0])
    clock[0] = 102.5
    sample = backend.sample()
    assert sample.time == 102.5
    assert sample.devices[0].energy_mj == 200.0 * 2 * 1000  # the recording's second 2


def test_replay_loops_with_its_energy_counter_still_rising(tmp_path: Path) -> None:
    clock = [0.0]
    backend = ReplayBackend(write(tmp_path / "r.jsonl", busy_run(4, 200.0)), lambda: clock[0])
    seen = []
    for t in range(0, 16):
        clock[0] = float(t)
        seen.append(backend.sample().devices[0].energy_mj)
    assert all(b is not None and a is not None and b > a for a, b in itertools.pairwise(seen))
    # 200 W over 15 s of replay, whatever the loop boundaries
    assert seen[-1] == pytest.approx(200.0 * 15 * 1000)


def test_a_missing_replay_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="replay file"):
        ReplayBackend(tmp_path / "nope.jsonl")
