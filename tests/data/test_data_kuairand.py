"""composer/data/kuairand.py: the shared joined sample, and the full release's layout (a log
joined with feature files) written small in tmp_path."""
import numpy as np
import pandas as pd
import pytest

from composer.data import kuairand, registry
from composer.data.errors import DataError
from composer.data.tables import data_root

FOLDER = data_root() / "kuairand"
needs_data = pytest.mark.skipif(
    not FOLDER.is_dir(), reason=f"real data not found at {FOLDER}: expected ../shared/data next to the "
    "project root (or set COMPOSER_DATA_DIR)")


@needs_data
def test_shared_sample():
    data = registry.load("kuairand")
    spec = data.spec
    assert len(data) == 200 and sum(data.counts().values()) == 200
    # the sample has no is_like column: the task is not invented
    assert spec.labels == {"is_click": "is_click", "long_view": "long_view"}
    assert spec.scenario == "tab" and spec.group == "user_id"
    assert "play_time_ms" not in data.frame.columns  # outcome of the exposure, never a feature
    raw = pd.read_csv(FOLDER / "kuairand_1k_log_sample200.csv")
    assert (data.frame["is_click"].to_numpy() == raw["is_click"].to_numpy()).all()
    expected = raw["play_time_ms"] >= np.minimum(raw["duration_ms"], 18_000)
    assert (data.frame["long_view"].to_numpy() == expected.to_numpy()).all()
    assert "derived" in data.meta["long_view"]
    assert set(data.frame["tab"]) == {"1"}
    assert data.frame["user_id"].iloc[1] == "88"
    assert data.frame[list(spec.features)].isna().sum().sum() == 0


USERS = ("user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,follow_user_num,"
         "follow_user_num_range,fans_user_num,fans_user_num_range,friend_user_num,friend_user_num_range,"
         "register_days,register_days_range," + ",".join(f"onehot_feat{i}" for i in range(18)))
VIDEOS = ("video_id,author_id,video_type,upload_dt,upload_type,visible_status,video_duration,server_width,"
          "server_height,music_id,music_type,tag")
LOG = ("user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,"
       "long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab")


def _release(tmp_path, log_rows, users=(0, 1)):
    (tmp_path / "user_features_pure.csv").write_text(
        USERS + "\n" + "".join(f"{u},full_active,0,0,0,5,\"(0,10]\",3,\"[1,10)\",1,\"[1,5)\",100,\"(60,180]\","
                                + ",".join(["1"] * 18) + "\n" for u in users))
    (tmp_path / "video_features_basic_pure.csv").write_text(
        VIDEOS + "\n" + "".join(f"{v},7,NORMAL,2022-04-10,LongImport,0.0,1000.0,720.0,1280.0,9,9.0,39\n"
                                for v in range(1, 11)))
    (tmp_path / "log_standard_4_22_to_5_08_pure.csv").write_text(LOG + "\n" + "".join(r + "\n" for r in log_rows))
    return tmp_path


def _row(user, video, t, click=1, like=0, long_view=1, tab=1):
    return f"{user},{video},20220422,900,{t},{click},{like},0,0,0,0,{long_view},2000,30000,0,0,0,0,{tab}"


def test_full_release_is_joined(tmp_path):
    folder = _release(tmp_path, [_row(u % 2, v, 1000 + v, like=v % 2, tab=v % 3) for u, v in
                                 zip(range(10), range(1, 11))])
    spec = registry.describe(str(folder))
    assert spec.labels == {"is_click": "is_click", "long_view": "long_view", "is_like": "is_like"}
    data = registry.load(str(folder))
    assert len(data) == 10
    assert data.frame["user_active_degree"].iloc[0] == "full_active"
    assert data.frame["follow_user_num_range"].iloc[0] == "(0,10]"
    assert data.frame["video_type"].iloc[0] == "NORMAL"
    assert data.frame["is_like"].tolist() == [v % 2 for v in range(1, 11)]
    assert data.frame["long_view"].tolist() == [1] * 10  # the log's own column, not derived
    assert "long_view" not in data.meta
    # split by time_ms: the last rows in time are test
    assert data.split.tolist()[-1] == "test" and data.split.tolist()[0] == "train"
    assert "time_ms" in data.meta["split"]
    assert set(data.frame["tab"]) == {"0", "1", "2"}


def test_missing_user_is_an_error(tmp_path):
    folder = _release(tmp_path, [_row(0, 1, 1), _row(5, 2, 2), _row(5, 3, 3)])
    with pytest.raises(DataError, match=r"log_standard_4_22_to_5_08_pure\.csv:3: user_id: user_id '5' has no row "
                                        r"in user_features_pure\.csv \(2 rows like this"):
        kuairand.load(directory=folder)


def test_missing_feature_file_is_an_error(tmp_path):
    folder = _release(tmp_path, [_row(0, 1, 1)])
    (folder / "video_features_basic_pure.csv").unlink()
    with pytest.raises(DataError, match=r"no video_features_basic\*\.csv file"):
        kuairand.load(directory=folder)


def test_duplicate_feature_row_is_an_error(tmp_path):
    folder = _release(tmp_path, [_row(0, 1, 1)], users=(0, 1, 0))
    with pytest.raises(DataError, match=r"user_features_pure\.csv:4: user_id: user_id '0' appears twice"):
        kuairand.load(directory=folder)


def test_non_binary_click_is_located(tmp_path):
    folder = _release(tmp_path, [_row(0, 1, 1), _row(1, 2, 2, click=2)])
    with pytest.raises(DataError, match=r"pure\.csv:3: is_click: a label must be 0 or 1, got '2'"):
        kuairand.load(directory=folder)


def test_missing_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("COMPOSER_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"data folder not found: .*kuairand.*COMPOSER_DATA_DIR"):
        registry.load("kuairand")
    # describe needs no data: the sample's spec
    assert registry.describe("kuairand").labels == {"is_click": "is_click", "long_view": "long_view"}
