from __future__ import annotations

import pytest

from shared.frames import FrameRangeError, chunk_frames, format_frames, parse_frame_range


@pytest.mark.parametrize(
    ("text", "frames"),
    [
        ("1-5", [1, 2, 3, 4, 5]),
        ("1..5", [1, 2, 3, 4, 5]),
        ("7", [7]),
        ("1-3,7,10-12", [1, 2, 3, 7, 10, 11, 12]),
        (" 3 - 4 , 1 ", [1, 3, 4]),
        ("5,1-3,2", [1, 2, 3, 5]),
        ("-2-1", [-2, -1, 0, 1]),
    ],
)
def test_parse_frame_range(text: str, frames: list[int]):
    assert parse_frame_range(text) == frames


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("1-x", "cannot read '1-x'"),
        ("1,,2", "cannot read ''"),
        ("5-1", "write '1-5'"),
        ("1-200000", "more than 100000 frames"),
        ("1-3;4", "cannot read"),
    ],
)
def test_malformed_ranges_say_what_is_wrong(text: str, hint: str):
    with pytest.raises(FrameRangeError, match=hint.replace("(", r"\(")):
        parse_frame_range(text)


def test_chunks_and_names():
    assert chunk_frames([1, 2, 3, 4, 5, 6, 7], 3) == [[1, 2, 3], [4, 5, 6], [7]]
    assert format_frames([1, 2, 3]) == "1-3"
    assert format_frames([10]) == "10"
    assert format_frames([9, 10]) == "9,10"
    assert format_frames([9, 10, 20, 21]) == "9,10,20,21"
    assert format_frames([1, 2, 3, 7]) == "1-3,7"
    with pytest.raises(FrameRangeError):
        chunk_frames([1], 0)
