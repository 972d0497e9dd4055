import numpy as np
import pytest
from kedro.io.core import DatasetError

from cxr_augment.datasets import ImageFolderDataset


def _images(n: int, value: int = 0) -> dict:
    rng = np.random.default_rng(value)
    return {
        f"rel/split/p{i:03d}/study1/view1_frontal.jpg": rng.integers(0, 256, (39, 32), np.uint8)
        for i in range(n)
    }


def test_round_trip_png_is_lossless_and_keys_are_relative_paths(tmp_path):
    ds = ImageFolderDataset(path=str(tmp_path), swap_depth=2)
    data = {k.replace(".jpg", ".png"): v for k, v in _images(5).items()}
    ds.save(data)
    loaded = ds.load()
    assert sorted(loaded) == sorted(data)
    for k, v in data.items():
        np.testing.assert_array_equal(loaded[k](), v)


def test_lazy_callables_are_rendered_at_save_and_jpeg_is_close(tmp_path):
    ds = ImageFolderDataset(path=str(tmp_path), save_args={"jpeg_quality": 95})
    smooth = np.tile(np.linspace(0, 255, 32, dtype=np.uint8), (39, 1))
    calls = []

    def make():
        calls.append(1)
        return smooth

    ds.save({"a/b/c.jpg": make})
    assert calls == [1]
    back = ds.load()["a/b/c.jpg"]()
    assert back.shape == smooth.shape and np.abs(back.astype(int) - smooth).max() <= 3


def test_parallel_workers_write_the_same_bytes(tmp_path):
    data = _images(12)
    ImageFolderDataset(path=str(tmp_path / "one")).save(data)
    ImageFolderDataset(path=str(tmp_path / "two"), save_args={"workers": 2}).save(data)
    for key in data:
        assert (tmp_path / "one" / key).read_bytes() == (tmp_path / "two" / key).read_bytes()


def test_a_failed_save_leaves_the_previous_tree_and_no_staging(tmp_path):
    ds = ImageFolderDataset(path=str(tmp_path))
    old = _images(3)
    ds.save(old)
    (tmp_path / "rel" / "keep.csv").write_text("beside the subtree\n")

    def broken():
        raise RuntimeError("render failed")

    bad = dict(_images(3, value=1))
    bad["rel/split/p999/study1/view1_frontal.jpg"] = broken
    with pytest.raises(DatasetError, match="render failed"):
        ds.save(bad)
    assert sorted(ds.load()) == sorted(old)
    assert not list(tmp_path.glob(".staging-*"))
    # a successful save replaces the subtree and leaves files beside it
    new = _images(2, value=2)
    ds.save(new)
    assert sorted(ds.load()) == sorted(new)
    assert (tmp_path / "rel" / "keep.csv").exists()


@pytest.mark.parametrize("key", ["/abs/x/y.jpg", "a/../b/c.jpg", "a/b.jpg"])
def test_bad_keys_are_rejected(tmp_path, key):
    with pytest.raises(DatasetError, match="image key"):
        ImageFolderDataset(path=str(tmp_path)).save({key: np.zeros((2, 2), np.uint8)})


def test_non_greyscale_arrays_are_rejected(tmp_path):
    with pytest.raises(DatasetError, match="2-D uint8"):
        ImageFolderDataset(path=str(tmp_path)).save({"a/b/c.jpg": np.zeros((2, 2, 3), np.uint8)})
