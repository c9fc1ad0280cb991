"""Tests of mmad.analysis: engagement measures, hurdle comparisons, problems, and `mmad analyze`."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmad.analysis import (
    INTENSITY,
    PROB,
    PlantedEffect,
    compare_groups,
    engagement_table,
    merge_segments,
    read_detections,
    read_durations,
    run_analysis,
    simulate_study,
    top_actions,
    union_length,
)
from mmad.cli import main
from mmad.errors import DataError

pytest.importorskip("statsmodels")


# ---------------------------------------------------------------- engagement measures


def test_union_and_bouts_exact_on_hand_made_overlaps():
    # [0,2]+[1,3] -> [0,3]; [3,3.5] touches it; [5,6] contains [5.5,5.7]; [8,9] alone
    starts = [1.0, 0.0, 5.0, 5.5, 3.0, 8.0]
    ends = [3.0, 2.0, 6.0, 5.7, 3.5, 9.0]
    assert union_length(starts, ends) == pytest.approx(3.5 + 1.0 + 1.0, abs=1e-12)
    np.testing.assert_allclose(merge_segments(starts, ends), [[0, 3.5], [5, 6], [8, 9]])
    # a gap of 1.5 s between [3.5] and [5] joins with merge_gap_s=1.5 but not 1.4
    assert len(merge_segments(starts, ends, merge_gap_s=1.4)) == 3
    assert len(merge_segments(starts, ends, merge_gap_s=1.5)) == 2
    assert union_length([], []) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 12)), min_size=1, max_size=12))
def test_union_length_matches_a_brute_force_cover(pairs):
    starts = np.array([s for s, _ in pairs], dtype=float)
    ends = starts + np.array([d for _, d in pairs], dtype=float)
    covered = np.zeros(60, dtype=bool)
    for s, e in zip(starts.astype(int), ends.astype(int)):
        covered[s:e] = True  # unit cells [k, k+1)
    assert union_length(starts, ends) == covered.sum()
    bouts = merge_segments(starts, ends)
    assert np.all(bouts[1:, 0] > bouts[:-1, 1])  # disjoint, sorted, not touching


def _two_video_case():
    participants = pd.DataFrame(
        {
            "video_id": ["v1", "v2", "w1"],
            "participant_id": ["P1", "P1", "P2"],
            "group": ["A", "A", "B"],
            "duration": [10.0, 30.0, 20.0],
        }
    )
    detections = pd.DataFrame(
        [
            ("v1", 0.0, 2.0, 9, 0.9),
            ("v1", 1.0, 4.0, 9, 0.8),  # overlaps -> union [0, 4]
            ("v1", 6.0, 9.0, 9, 0.1),  # below the threshold
            ("v2", 10.0, 20.0, 9, 0.9),
            ("v2", 15.0, 25.0, 9, 0.5),  # union [10, 25]
            ("v2", 12.0, 13.0, 9, 0.7),  # nested
            ("v2", 28.0, 35.0, 3, 0.9),  # runs past the video's end -> [28, 30]
            ("w1", 5.0, 5.0, 9, 0.9),  # zero-length: engaged, no time
        ],
        columns=["video_id", "t_start", "t_end", "label", "score"],
    )
    return detections, participants


def test_percent_time_exact_over_overlaps_and_videos():
    detections, participants = _two_video_case()
    table = engagement_table(detections, participants, threshold=0.3)
    assert len(table) == 2 * 52
    row = table[(table.participant_id == "P1") & (table.action_id == 9)].iloc[0]
    assert row.engaged == 1 and row.n_videos == 2 and row.duration_s == 40.0
    assert row.engaged_s == pytest.approx(4.0 + 15.0, abs=1e-12)
    assert row.percent_time == pytest.approx(100 * 19.0 / 40.0, abs=1e-12)
    assert row.bouts == 2 and row.mean_bout_s == pytest.approx(9.5)
    assert row.n_detections == 5 and row.action == "nodding" and row.body_group == "head"
    clipped = table[(table.participant_id == "P1") & (table.action_id == 3)].iloc[0]
    assert clipped.engaged_s == pytest.approx(2.0) and clipped.percent_time == pytest.approx(5.0)
    zero = table[(table.participant_id == "P2") & (table.action_id == 9)].iloc[0]
    assert zero.engaged == 1 and zero.engaged_s == 0.0 and zero.bouts == 1
    none = table[(table.participant_id == "P2") & (table.action_id == 0)].iloc[0]
    assert none.engaged == 0 and none.percent_time == 0 and np.isnan(none.mean_bout_s)
    # a lower threshold lets the 0.1-score detection in: union [0, 4] + [6, 9]
    loose = engagement_table(detections, participants, threshold=0.0)
    row = loose[(loose.participant_id == "P1") & (loose.action_id == 9)].iloc[0]
    assert row.engaged_s == pytest.approx(7.0 + 15.0) and row.bouts == 3
    assert top_actions(table, 5) == [9, 3]


# ---------------------------------------------------------------- statistics


def test_planted_difference_in_engagement_is_found():
    detections, participants = simulate_study(
        group_sizes={"A": 70, "B": 70},
        effects=(PlantedEffect(10, "B", prob_odds_ratio=6.0), PlantedEffect(30, "A", intensity_ratio=2.5)),
        seed=3,
    )
    table = engagement_table(detections, participants, threshold=0.3)
    actions = top_actions(table, 6)
    assert 10 in actions and 30 in actions
    result, problems = compare_groups(table, actions=actions)
    assert len(result) == 2 * len(actions) and not problems
    prob = result[(result.action_id == 10) & (result.type == PROB)].iloc[0]
    assert prob.p_adj < 0.05 and prob.effect < 1 and prob.contrast == "A < B"
    inten = result[(result.action_id == 30) & (result.type == INTENSITY)].iloc[0]
    assert inten.p_adj < 0.05 and inten.effect > 1 and inten.contrast == "A > B"
    # nothing else was planted: the remaining comparisons do not survive the adjustment
    others = result[~(((result.action_id == 10) & (result.type == PROB))
                      | ((result.action_id == 30) & (result.type == INTENSITY)))]
    assert (others.p_adj >= 0.05).all()
    # BH-adjusted p-values are never below the raw ones
    assert (result.p_adj >= result.p - 1e-12).all()


def _null_table(rng, n_per_group=40):
    n = 2 * n_per_group
    engaged = rng.random(n) < 0.5
    fraction = np.where(engaged, rng.beta(2.0, 30.0, n), 0.0)
    return pd.DataFrame(
        {
            "participant_id": [f"p{i}" for i in range(n)],
            "group": ["A"] * n_per_group + ["B"] * n_per_group,
            "action_id": 0,
            "engaged": engaged.astype(int),
            "engaged_s": fraction * 150.0,
            "duration_s": 150.0,
        }
    )


def test_null_false_positive_rate_near_nominal():
    rng = np.random.default_rng(11)
    p_prob, p_int = [], []
    for _ in range(200):
        result, _ = compare_groups(_null_table(rng), actions=[0])
        p_prob.extend(result.loc[result.type == PROB, "p"])
        p_int.extend(result.loc[result.type == INTENSITY, "p"])
    assert len(p_prob) >= 195 and len(p_int) >= 195
    for p in (np.asarray(p_prob), np.asarray(p_int)):
        assert 0.01 <= np.mean(p < 0.05) <= 0.10
        assert 0.4 <= np.mean(p) <= 0.6  # roughly uniform under the null


def test_covariates_enter_the_model():
    rng = np.random.default_rng(5)
    table = _null_table(rng, 60)
    age = pd.Series(rng.uniform(5, 50, 120), index=table.participant_id)
    # engagement driven by age, and age differs by group -> the group effect vanishes with age in the model
    age[table.group.to_numpy() == "B"] += 15
    table["engaged"] = (rng.random(120) < 1 / (1 + np.exp(-(age.to_numpy() - 35) / 5))).astype(int)
    table["engaged_s"] = np.where(table.engaged == 1, 10.0 + rng.random(120), 0.0)
    plain, _ = compare_groups(table, actions=[0])
    adjusted, _ = compare_groups(table, actions=[0], covariates=age.to_frame("age"))
    p_plain = plain.loc[plain.type == PROB, "p"].iloc[0]
    p_adjusted = adjusted.loc[adjusted.type == PROB, "p"].iloc[0]
    assert p_plain < 0.01 and p_adjusted > p_plain * 10


def test_degenerate_comparisons_are_reported_not_raised():
    rows = []
    for i in range(6):
        group = "A" if i < 3 else "B"
        rows.append((f"p{i}", group, 0, 1 if group == "A" else 0, 5.0 if group == "A" else 0.0))  # separation
        rows.append((f"p{i}", group, 1, 1, 5.0))  # everyone engaged, same share -> no variance
        rows.append((f"p{i}", group, 2, 0, 0.0))  # nobody engaged
    rows.append(("solo", "C", 0, 1, 3.0))
    table = pd.DataFrame(rows, columns=["participant_id", "group", "action_id", "engaged", "engaged_s"])
    table["duration_s"] = 100.0
    result, problems = compare_groups(table, actions=[0, 1, 2])
    assert result.empty
    text = "\n".join(problems)
    assert "group 'C': 1 participant(s)" in text
    assert "perfect separation" in text and "no variance" in text and "nobody engaged" in text


# ---------------------------------------------------------------- files and the command line


def _write_study(tmp_path, *, seed=1):
    detections, participants = simulate_study(
        group_sizes={"ASD": 30, "PSY": 25, "TDC": 30},
        effects=(PlantedEffect(30, "PSY", intensity_ratio=3.0),),
        videos_per_participant=(1, 1),
        seed=seed,
    )
    challenge = detections.rename(columns={"label": "class"})[["video_id", "t_start", "t_end", "class", "score"]]
    det_path = tmp_path / "detections.csv"
    challenge.to_csv(det_path)  # the challenge CSV keeps the unnamed index column
    part_path = tmp_path / "participants.csv"
    participants.to_csv(part_path, index=False)
    return detections, participants, det_path, part_path


def test_cli_writes_tables_plot_and_problems(tmp_path, capsys):
    detections, participants, det_path, part_path = _write_study(tmp_path)
    extra = pd.DataFrame([("stranger", 1.0, 2.0, 5, 0.9)], columns=["video_id", "t_start", "t_end", "class", "score"])
    pd.concat([pd.read_csv(det_path, index_col=0), extra], ignore_index=True).to_csv(det_path)
    out = tmp_path / "out"
    rc = main(["analyze", "--detections", str(det_path), "--participants", str(part_path), "--out", str(out),
               "--threshold", "0.3", "--top-actions", "4", "--covariates", "age,sex"])
    printed = capsys.readouterr().out
    assert rc == 0
    for name in ("engagement.csv", "comparisons.csv", "comparisons.md", "violins.png", "problems.txt"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "violins.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    engagement = pd.read_csv(out / "engagement.csv")
    assert len(engagement) == 85 * 52
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert set(comparisons.type) == {PROB, INTENSITY}
    assert len(comparisons) == 4 * 3 * 2
    markdown = (out / "comparisons.md").read_text()
    assert "| Action | Contrast | Type | Effect |" in markdown and "retracting feet" in markdown
    assert "missing from the participants table (stranger)" in (out / "problems.txt").read_text()
    assert "stranger" in printed and "retracting feet" in printed


def test_detect_json_folder_with_metadata_durations_matches_csv(tmp_path):
    detections, participants, det_path, part_path = _write_study(tmp_path, seed=2)
    folder = tmp_path / "detect_out"
    folder.mkdir()
    for video_id, rows in detections.groupby("video_id"):
        items = [
            {"class_id": int(r.label), "class_name": "x", "body_group": "y", "t_start": r.t_start,
             "t_end": r.t_end, "score": r.score}
            for r in rows.itertuples()
        ]
        duration = float(participants.set_index("video_id").loc[video_id, "duration"])
        (folder / f"{video_id}.json").write_text(json.dumps({"video_id": video_id, "duration": duration,
                                                             "detections": items}))
    read, durations = read_detections(folder)
    assert len(read) == len(detections) and len(durations) == detections.video_id.nunique()
    no_duration = tmp_path / "participants_no_duration.csv"
    participants.drop(columns="duration").to_csv(no_duration, index=False)
    a = run_analysis(folder, no_duration, tmp_path / "a", threshold=0.3, engagement_only=True)
    b = run_analysis(det_path, part_path, tmp_path / "b", threshold=0.3, engagement_only=True)
    assert set(participants.video_id) == set(detections.video_id)
    pd.testing.assert_frame_equal(a.engagement, b.engagement)
    assert not (tmp_path / "a" / "comparisons.csv").exists()


def test_bad_inputs(tmp_path, capsys):
    det = tmp_path / "det.csv"
    det.write_text("video_id,t_start,t_end,label,score\nv1,1.0,2.0,3,0.5\nv1,4.0,3.0,3,0.5\n")
    with pytest.raises(DataError, match="row 3: t_end 3.0 is before t_start 4.0"):
        read_detections(det)
    det.write_text("video_id,t_start,t_end,label,score\nv1,1.0,2.0,nodding,0.5\nv1,1.0,2.0,dancing,0.5\n")
    with pytest.raises(DataError, match="row 3: unknown class 'dancing'"):
        read_detections(det)
    part = tmp_path / "p.csv"
    part.write_text("video_id,participant_id,group\nv1,P1,A\n")
    rc = main(["analyze", "--detections", str(det), "--participants", str(part), "--out", str(tmp_path / "o")])
    assert rc == 2 and "unknown class 'dancing'" in capsys.readouterr().err


def test_small_groups_and_rare_actions_do_not_crash(tmp_path):
    det = tmp_path / "det.csv"
    det.write_text("video_id,t_start,t_end,label,score\n"
                   "a1,0,10,9,0.9\na2,0,20,9,0.9\na3,5,6,9,0.9\nb1,0,1,9,0.9\nb2,0,3,9,0.9\nc1,0,4,9,0.9\n"
                   "b3,0,1,9,0.9\n")
    part = tmp_path / "p.csv"
    part.write_text("video_id,participant_id,group,duration\n"
                    "a1,P1,A,100\na2,P2,A,100\na3,P3,A,100\nb1,P4,B,100\nb2,P5,B,100\nc1,P6,C,100\nb3,P7,B,\n")
    result = run_analysis(det, part, tmp_path / "out", num_top_actions=3)
    text = (tmp_path / "out" / "problems.txt").read_text()
    assert "group 'C': 1 participant(s)" in text
    assert "only 1 action(s) have any engagement" in text
    assert "b3: no positive duration" in text and "missing from the participants table" not in text
    assert "no variance (everyone engaged)" in text
    assert len(result.comparisons) == 1 and result.comparisons.type.iloc[0] == INTENSITY
    assert (tmp_path / "out" / "violins.png").exists()


def test_missing_statsmodels_gives_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    _, _, det_path, part_path = _write_study(tmp_path)
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)
    rc = main(["analyze", "--detections", str(det_path), "--participants", str(part_path),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "pip install 'mmad[analysis]'" in err and len(err.strip().splitlines()) == 1
    rc = main(["analyze", "--detections", str(det_path), "--participants", str(part_path),
               "--out", str(tmp_path / "o"), "--engagement-only"])
    assert rc == 0 and (tmp_path / "o" / "engagement.csv").exists()


def test_real_mma52_ground_truth_as_detections(shared_datasets, tmp_path):
    root = shared_datasets / "mma52"
    durations = read_durations(root / "mmad.json")
    meta = json.loads((root / "mmad.json").read_text())
    val = [v for v, e in meta.items() if e["subset"] == "val"][:200]
    assert val, "no validation videos in mmad.json"
    rows = [(v, t0, t1, c, 1.0) for v in val for c, t0, t1 in meta[v]["actions"]]
    detections = pd.DataFrame(rows, columns=["video_id", "t_start", "t_end", "label", "score"])
    participants = pd.DataFrame({"video_id": val, "participant_id": [f"P{i // 2}" for i in range(len(val))],
                                 "group": ["A" if i % 4 < 2 else "B" for i in range(len(val))]})
    participants["duration"] = participants.video_id.map(durations)
    table = engagement_table(detections, participants)
    assert table.percent_time.between(0, 100 + 1e-9).all()
    summed = (detections.t_end - detections.t_start).clip(lower=0).sum()
    assert 0 < table.engaged_s.sum() <= summed + 1e-6


def test_robust_covariance_matches_statsmodels_hc0():
    import statsmodels.api as sm

    from mmad.analysis import fit_logit_glm

    rng = np.random.default_rng(2)
    x = np.column_stack([np.ones(50), rng.integers(0, 2, 50), rng.normal(size=50)])
    y = rng.beta(2, 20, 50)
    params, cov = fit_logit_glm(y, x, cov_type="HC0")
    ref = sm.GLM(y, x, family=sm.families.Binomial()).fit(cov_type="HC0")
    np.testing.assert_allclose(params, ref.params, rtol=1e-6)
    np.testing.assert_allclose(cov, ref.cov_params(), rtol=1e-5)
    _, cov1 = fit_logit_glm(y, x, cov_type="HC1")
    np.testing.assert_allclose(cov1, cov * 50 / 47, rtol=1e-12)
    _, cov3 = fit_logit_glm(y, x, cov_type="HC3")
    assert np.all(np.diag(cov3) > np.diag(cov))


def test_adjustment_methods_and_families():
    rng = np.random.default_rng(4)
    tables = []
    for action in range(3):
        t = _null_table(rng, 30)
        t["action_id"] = action
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)
    raw, _ = compare_groups(table, actions=[0, 1, 2], p_adjust="none")
    np.testing.assert_allclose(raw.p_adj, raw.p)
    bonf, _ = compare_groups(table, actions=[0, 1, 2], p_adjust="bonferroni", adjust_within="type")
    for _, rows in bonf.groupby("type"):
        np.testing.assert_allclose(rows.p_adj, np.minimum(1.0, rows.p * len(rows)))
    bh, _ = compare_groups(table, actions=[0, 1, 2])
    order = np.argsort(bh.p.to_numpy())
    p_sorted, adj_sorted = bh.p.to_numpy()[order], bh.p_adj.to_numpy()[order]
    ranks = np.arange(1, len(bh) + 1)
    expected = np.minimum.accumulate((p_sorted * len(bh) / ranks)[::-1])[::-1].clip(max=1.0)
    np.testing.assert_allclose(adj_sorted, expected)


def test_tiny_random_studies_never_crash(tmp_path):
    for seed in range(6):
        rng = np.random.default_rng(seed)
        sizes = {g: int(rng.integers(1, 6)) for g in "ABC"[: int(rng.integers(1, 4))]}
        base_prob = rng.uniform(0, 1, 52) * (rng.random(52) < 0.3)
        detections, participants = simulate_study(
            group_sizes=sizes, base_prob=base_prob, base_intensity=rng.uniform(0.001, 0.5, 52),
            false_alarms_per_video=float(rng.uniform(0, 3)), seed=seed,
        )
        detections.to_csv(tmp_path / "d.csv", index=False)
        participants.to_csv(tmp_path / "p.csv", index=False)
        result = run_analysis(tmp_path / "d.csv", tmp_path / "p.csv", tmp_path / f"o{seed}",
                              threshold=float(rng.uniform(0, 0.5)), covariates=("age", "sex") if seed % 2 else ())
        written = (tmp_path / f"o{seed}" / "problems.txt").read_text().splitlines()
        assert written == result.problems
        assert np.isfinite(result.comparisons.p).all()


def test_json_layouts(tmp_path):
    det = {"class_id": 9, "class_name": "nodding", "body_group": "head", "t_start": 1.0, "t_end": 2.5, "score": 0.7}
    (tmp_path / "vidA.json").write_text(json.dumps([det]))  # a bare list: the video id is the file's stem
    (tmp_path / "many.json").write_text(json.dumps({"vidB": [det], "vidC": {"duration": 12.0, "detections": [det]}}))
    (tmp_path / "anet.json").write_text(json.dumps(
        {"results": {"vidD": [{"segment": [0.5, 1.0], "label": "shaking head", "score": 0.4}]}}))
    (tmp_path / "listed.json").write_text(json.dumps([{"video_id": "vidE", "duration": 8.0, "detections": [det]}]))
    frame, durations = read_detections(tmp_path)
    assert sorted(frame.video_id) == ["vidA", "vidB", "vidC", "vidD", "vidE"]
    assert frame.set_index("video_id").loc["vidD", "label"] == 10  # "shaking head"
    assert durations == {"vidC": 12.0, "vidE": 8.0}
    (tmp_path / "bad.json").write_text(json.dumps({"vidF": [{"t_start": 1, "t_end": 2, "score": 0.5}]}))
    with pytest.raises(DataError, match=r"bad.json: key 'vidF'\[0\]: needs class_id"):
        read_detections(tmp_path)
