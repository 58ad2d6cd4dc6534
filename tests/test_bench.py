"""seglib.bench: the table `make bench` writes (the measurements themselves are not asserted)."""

from __future__ import annotations

from seglib.bench import markdown_table, target_checks


def report(ours_ips=10.0, theirs_ips=4.0, pipeline=300.0, predict_ms=20.0):
    ours = {"train_images_per_second": ours_ips, "pipeline_images_per_second": pipeline,
            "predict_ms_per_640x480_photo": predict_ms, "peak_rss_mib": 500, "parameters": 2_000_000,
            "input_size": 128}
    theirs = {**ours, "train_images_per_second": theirs_ips, "predict_ms_per_640x480_photo": 80.0}
    return {"results": {"ours (cpu profile)": ours, "course solution": theirs},
            "ratios_ours_over_theirs": {"train_images_per_second": ours_ips / theirs_ips,
                                        "predict_speedup": 80.0 / predict_ms,
                                        "pipeline_over_training_ours": pipeline / ours_ips},
            "machine": {"cpu_count": 2, "platform": "test"}, "generated": "now"}


def test_targets_met_and_missed():
    r = report()
    assert [ok for *_, ok in target_checks(r["ratios_ours_over_theirs"], r["results"]["ours (cpu profile)"])] \
        == [True, True, True]
    r = report(ours_ips=5.0, theirs_ips=4.0, pipeline=12.0, predict_ms=60.0)
    assert [ok for *_, ok in target_checks(r["ratios_ours_over_theirs"], r["results"]["ours (cpu profile)"])] \
        == [False, False, False]


def test_markdown_table_names_both_configurations_and_the_targets():
    text = markdown_table(report(ours_ips=5.0, theirs_ips=4.0))
    assert "| training images/s | 5.0 | 4.0 |" in text
    assert "| our training vs the course configuration | 1.25x | no (>= 1.5x) |" in text
    assert "| predict per 640x480 photo | 20.0 ms | yes (<= 50 ms) |" in text
