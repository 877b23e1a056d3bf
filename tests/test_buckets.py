"""Bucket syntax, the LTX-2.3 size rules and ltx-trainer's bucket choice."""

from __future__ import annotations

import pytest

from trainer_core.data.buckets import (
    Bucket,
    BucketError,
    bucket_problems,
    choose_bucket,
    format_buckets,
    is_valid_frame_count,
    largest_valid_frames,
    parse_buckets,
    suggest_bucket,
)


def test_parse_accepts_separators_and_merges_duplicates():
    parsed = parse_buckets(" 768x512x49; 512X768x49 ,\n768x512x1;768x512x49 ")
    assert parsed == [Bucket(768, 512, 49), Bucket(512, 768, 49), Bucket(768, 512, 1)]
    assert format_buckets(parsed) == "768x512x49;512x768x49;768x512x1"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1000x540x50", ["width 1000 is not a multiple of 32 (nearest: 992 or 1024)",
                         "height 540 is not a multiple of 32 (nearest: 512 or 544)",
                         "frames 50 is not 8n+1 (nearest: 49 or 57; 1 for images)"]),
        ("768x512x48", ["frames 48 is not 8n+1 (nearest: 41 or 49"]),
        ("768x512x2", ["frames 2 is not 8n+1 (nearest: 1 or 9"]),
        ("20x512x9", ["width 20 is below the minimum 32"]),
        ("768x512x0", ["frames 0 must be at least 1"]),
        ("768x512", ["'768x512' is not WxHxF"]),
        ("", ["No buckets given"]),
    ],
)
def test_parse_errors_name_the_nearest_valid_values(text, expected):
    with pytest.raises(BucketError) as caught:
        parse_buckets(text)
    for fragment in expected:
        assert fragment in str(caught.value)


def test_parse_reports_every_bad_bucket_at_once():
    with pytest.raises(BucketError) as caught:
        parse_buckets("768x512x49;770x512x49;768x512x50")
    message = str(caught.value)
    assert "'770x512x49'" in message and "'768x512x50'" in message and "'768x512x49'" not in message


def test_frame_count_rules():
    assert [f for f in range(1, 60) if is_valid_frame_count(f)] == [1, 9, 17, 25, 33, 41, 49, 57]
    assert [largest_valid_frames(n) for n in (0, 1, 8, 9, 16, 17, 48, 49, 132)] == [0, 1, 1, 9, 9, 17, 41, 49, 129]
    assert bucket_problems(960, 544, 121) == []


def test_choose_bucket_order_aspect_then_frames_then_area():
    buckets = parse_buckets("512x512x49;768x512x25;768x512x49;1024x704x49;512x768x49;768x512x1")
    # 16:9 source: 768x512 (1.5) and 1024x704 (1.45) - closest log-aspect wins.
    assert choose_bucket(buckets, 1920, 1080, 200) == Bucket(768, 512, 49)
    # Same aspect, more frames first.
    assert choose_bucket(buckets, 1536, 1024, 200) == Bucket(768, 512, 49)
    # Not enough frames for 49: the 25-frame bucket of the same aspect.
    assert choose_bucket(buckets, 1536, 1024, 30) == Bucket(768, 512, 25)
    assert choose_bucket(buckets, 1080, 1920, 200) == Bucket(512, 768, 49)
    assert choose_bucket(buckets, 1536, 1024, 1) == Bucket(768, 512, 1)
    assert choose_bucket(buckets, 1536, 1024, 20) is None
    # Equal aspect and frames: the larger area.
    assert choose_bucket(parse_buckets("512x512x9;640x640x9"), 1000, 1000, 9) == Bucket(640, 640, 9)


def test_choose_bucket_no_upscale():
    buckets = parse_buckets("768x512x9;384x256x9")
    assert choose_bucket(buckets, 600, 400, 9) == Bucket(768, 512, 9)
    assert choose_bucket(buckets, 600, 400, 9, no_upscale=True) == Bucket(384, 256, 9)
    assert choose_bucket(buckets, 300, 200, 9, no_upscale=True) is None


def test_suggest_bucket_is_valid_and_keeps_shape():
    bucket = suggest_bucket(1080, 1920, 100, 768 * 512)
    assert not bucket_problems(bucket.width, bucket.height, bucket.frames)
    assert bucket.height > bucket.width
    assert bucket.frames == 97
