"""The configuration cache: the same values as Kedro's loader, read back only while nothing they
depend on changed, never credentials."""

from __future__ import annotations

import logging
import shutil

import pytest
from kedro.config import OmegaConfigLoader

from cxr_augment.config_loader import CachedConfigLoader
from cxr_augment.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT


def _cached(conf, env="local", runtime_params=None):
    kwargs = dict(CONFIG_LOADER_ARGS, env=env, runtime_params=runtime_params)
    return CachedConfigLoader(str(conf), **kwargs)


def _loaders(conf, env="local", runtime_params=None):
    kwargs = dict(CONFIG_LOADER_ARGS, env=env, runtime_params=runtime_params)
    return _cached(conf, env, runtime_params), OmegaConfigLoader(str(conf), **kwargs)


@pytest.fixture
def conf(tmp_path):
    shutil.copytree(PROJECT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    return tmp_path / "conf"


def _no_reading(monkeypatch):
    def fail(self, key):
        raise AssertionError(f"read the configuration for {key!r} instead of the cache")

    monkeypatch.setattr(OmegaConfigLoader, "__getitem__", fail)


@pytest.mark.parametrize("env", ["local", "chexpert", "study"])
def test_cached_values_equal_kedros_and_are_read_back(conf, env, monkeypatch):
    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    cached, plain = _loaders(conf, env)
    for key in ("parameters", "catalog", "globals"):
        assert cached[key] == plain[key]
    files = sorted(p.name.split("-")[0] for p in (conf.parent / ".cache" / "config").iterdir())
    assert files == ["catalog", "globals", "parameters"]
    expected = {key: plain[key] for key in ("parameters", "catalog", "globals")}
    _no_reading(monkeypatch)
    again = _cached(conf, env)
    for key, value in expected.items():
        assert again[key] == value


def test_an_edit_an_added_file_runtime_params_and_environment_variables_are_seen(conf, monkeypatch):
    monkeypatch.setenv("CHEXPERT_ROOT", "/first")
    first, _ = _loaders(conf, "chexpert")
    assert first["catalog"]["chexpert_train_csv"]["dataset"]["filepath"].startswith("/first/")
    monkeypatch.setenv("CHEXPERT_ROOT", "/second")
    second, _ = _loaders(conf, "chexpert")
    assert second["catalog"]["chexpert_train_csv"]["dataset"]["filepath"].startswith("/second/")

    base, _ = _loaders(conf)
    seed = base["parameters"]["preprocessing"]["split"]["seed"]
    path = conf / "base" / "parameters_preprocessing.yml"
    text = path.read_text()
    assert f"seed: {seed}" in text
    path.write_text(text.replace(f"seed: {seed}", f"seed: {seed + 1}", 1))
    edited, _ = _loaders(conf)
    assert edited["parameters"]["preprocessing"]["split"]["seed"] == seed + 1

    (conf / "local" / "parameters_extra.yml").write_text("preprocessing:\n  split:\n    seed: 7\n")
    added, _ = _loaders(conf)
    assert added["parameters"]["preprocessing"]["split"]["seed"] == 7

    # runtime parameters reach the configuration through ${runtime_params:...}
    assert _cached(conf)["catalog"]["tensor_store"]["save_args"]["workers"] == 2
    runtime, plain = _loaders(conf, runtime_params={"workers": 5})
    assert runtime["catalog"] == plain["catalog"]
    assert runtime["catalog"]["tensor_store"]["save_args"]["workers"] == 5
    assert _cached(conf)["catalog"]["tensor_store"]["save_args"]["workers"] == 2


def test_credentials_are_never_written(conf):
    (conf / "local" / "credentials.yml").write_text("db:\n  password: secret-value\n")
    cached, _ = _loaders(conf)
    assert cached["credentials"]["db"]["password"] == "secret-value"
    cached["parameters"]
    for path in (conf.parent / ".cache" / "config").iterdir():
        assert not path.name.startswith("credentials")
        assert b"secret-value" not in path.read_bytes()


def test_an_unusable_cache_folder_is_an_error_naming_it_and_can_be_turned_off(conf, monkeypatch):
    (conf.parent / ".cache").write_text("a file where the cache folder would be")
    with pytest.raises(
        OSError, match=r"configuration cache .*\.cache/config.*CXR_CONFIG_CACHE=off"
    ):
        _cached(conf)
    monkeypatch.setenv("CXR_CONFIG_CACHE", "off")
    cached, plain = _loaders(conf)
    assert cached["parameters"] == plain["parameters"]
    assert (conf.parent / ".cache").is_file()  # nothing written


def test_a_corrupted_cache_entry_is_reported_and_replaced(conf, caplog):
    cached, plain = _loaders(conf)
    expected = plain["parameters"]
    assert cached["parameters"] == expected
    [entry] = (conf.parent / ".cache" / "config").glob("parameters-*")
    entry.write_bytes(b"\x00not marshal")
    with caplog.at_level(logging.WARNING, logger="cxr_augment.config_loader"):
        assert _loaders(conf)[0]["parameters"] == expected
    assert f"configuration cache {entry} is corrupted" in caplog.text
    assert _loaders(conf)[0]["parameters"] == expected


# --- environments that stand on others (layers.yml) -------------------------------------------


def _layered(conf, env):
    from cxr_augment.config_layers import LayeredConfigLoader

    return LayeredConfigLoader(str(conf), **dict(CONFIG_LOADER_ARGS, env=env))


def _raw_leaves(folder, pattern="parameters*.yml"):
    """The leaves (key path -> value) the YAML files of one folder set, unresolved."""
    import yaml

    leaves = {}

    def walk(value, path):
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(v, (*path, k))
        else:
            leaves[path] = value

    for path in sorted(folder.glob(pattern)):
        walk(yaml.safe_load(path.read_text()) or {}, ())
    return leaves


def test_a_layered_environment_merges_its_layers_in_order(conf, monkeypatch):
    """conf/chexpert_gpu stands on gpu, then chexpert: every leaf is the value of the last of
    base, gpu, chexpert, chexpert_gpu whose files set it (read here from the raw YAML)."""
    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    cached = _layered(conf, "chexpert_gpu")
    assert cached._layer_names() == ["gpu", "chexpert"]
    params = cached["parameters"]
    expected = {}
    for env in ("base", "gpu", "chexpert", "chexpert_gpu"):
        expected.update(_raw_leaves(conf / env))
    checked = 0
    for path, value in expected.items():
        if isinstance(value, str) and "${" in value:  # interpolated: resolved below
            continue
        got = params
        for key in path:
            got = got[key]
        assert got == value, path
        checked += 1
    assert checked > 500
    # the leaves this environment exists for
    train = params["study"]["defaults"]["train"]
    assert (train["lr"], train["batch_size"], train["epochs"]) == (0.001, 16, 3)  # chexpert's
    assert train["num_workers"] == 8  # gpu's, which chexpert leaves alone
    gen = params["generation"]
    assert gen["models"]["grey"]["preset"] == "thesis" and gen["device"] == "cuda"  # gpu's
    assert gen["metrics"]["max_reference"] == 2000 and gen["metrics"]["n_per_class"] == 512
    assert params["reporting"]["env"] == "chexpert_gpu"
    assert params["preprocessing"]["ingestion"]["chexpert_root"] == "/somewhere/chexpert"
    # the catalog and globals are chexpert's (gpu and chexpert_gpu have none): as Kedro reads them
    kedro_chexpert = OmegaConfigLoader(str(conf), **dict(CONFIG_LOADER_ARGS, env="chexpert"))
    for key in ("catalog", "globals"):
        assert cached[key] == kedro_chexpert[key]
    # Kedro's loader through this class without the cache reads the same layers
    monkeypatch.setenv("CXR_CONFIG_CACHE", "off")
    uncached = _layered(conf, "chexpert_gpu")
    for key in ("parameters", "catalog", "globals"):
        assert uncached[key] == cached[key]


def test_one_layer_and_no_files_of_its_own_is_that_environment_as_kedro_reads_it(conf, monkeypatch):
    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    (conf / "alias").mkdir()
    (conf / "alias" / "layers.yml").write_text("layers: [chexpert]\n")
    alias = _layered(conf, "alias")
    kedro = OmegaConfigLoader(str(conf), **dict(CONFIG_LOADER_ARGS, env="chexpert"))
    for key in ("parameters", "catalog", "globals"):
        assert alias[key] == kedro[key]
    # without layers.yml the folder is an ordinary (empty) environment: base alone
    (conf / "alias" / "layers.yml").unlink()
    base = OmegaConfigLoader(str(conf), **dict(CONFIG_LOADER_ARGS, env="alias"))
    assert _layered(conf, "alias")["parameters"] == base["parameters"]


def test_an_edit_of_a_layer_is_seen_through_the_cache(conf, monkeypatch):
    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    assert _layered(conf, "chexpert_gpu")["parameters"]["generation"]["train"]["epochs"] == 40

    def fail(self, key):
        raise AssertionError(f"read the configuration for {key!r} instead of the cache")

    from cxr_augment.config_layers import _ReadThroughLayers

    with monkeypatch.context() as patch:  # unchanged: read back from the cache
        patch.setattr(_ReadThroughLayers, "__getitem__", fail)
        assert _layered(conf, "chexpert_gpu")["parameters"]["generation"]["train"]["epochs"] == 40
    path = conf / "gpu" / "parameters.yml"
    text = path.read_text()
    assert "    epochs: 40 " in text
    path.write_text(text.replace("    epochs: 40 ", "    epochs: 41 ", 1))
    assert _layered(conf, "chexpert_gpu")["parameters"]["generation"]["train"]["epochs"] == 41


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("layers: [nowhere]\n", "layer 'nowhere' is not a folder of"),
        ("layers: [base]\n", "layer 'base' is the base, this environment or named twice"),
        ("layers: [gpu, gpu]\n", "layer 'gpu' is the base, this environment or named twice"),
        ("layers: [mine]\n", "layer 'mine' is the base, this environment or named twice"),
        ("layers: gpu\n", "expected `layers: \\[<environment>, ...\\]`"),
        ("layers: [gpu\n", "not valid YAML"),
        ("layers: [chexpert_gpu]\n", "layer 'chexpert_gpu' has layers of its own"),
    ],
)
def test_a_bad_layers_file_is_an_error_naming_it_and_the_rule(conf, monkeypatch, text, rule):
    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    (conf / "mine").mkdir()
    (conf / "mine" / "layers.yml").write_text(text)
    with pytest.raises(ValueError, match=rf"mine/layers\.yml: {rule}"):
        _layered(conf, "mine")["parameters"]


def test_a_packaged_configuration_reads_its_layers_too(conf, tmp_path, monkeypatch):
    """``--conf-source conf.tar.gz`` (``kedro package``): the layers are read from the archive,
    as from the folder."""
    import tarfile

    monkeypatch.setenv("CHEXPERT_ROOT", "/somewhere/chexpert")
    archive = tmp_path / "conf.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(conf, arcname="conf")
    monkeypatch.setenv("CXR_CONFIG_CACHE", "off")
    packed, folder = _layered(archive, "chexpert_gpu"), _layered(conf, "chexpert_gpu")
    assert packed._protocol != "file" and packed._layer_names() == ["gpu", "chexpert"]
    for key in ("parameters", "catalog", "globals"):
        assert packed[key] == folder[key]


def test_other_reading_code_s_entries_unused_for_a_week_are_swept(tmp_path):
    import os

    from cxr_augment.config_layers import UNUSED_S, sweep_other_readers

    parent = tmp_path / "config"
    own, recent, stale = parent / "reader-own", parent / "reader-recent", parent / "reader-stale"
    for folder in (own, recent, stale):
        folder.mkdir(parents=True)
        (folder / "parameters-abc.marshal").write_bytes(b"x")
    legacy, other = parent / "parameters-old.marshal", parent / "notes.txt"
    legacy.write_bytes(b"x")
    other.write_text("not the cache's")
    now = 10 * UNUSED_S
    old = now - UNUSED_S - 60
    for path in (stale, stale / "parameters-abc.marshal", legacy, other, own):
        os.utime(path, (old, old))
    for path in (recent, recent / "parameters-abc.marshal"):
        os.utime(path, (now - 60, now - 60))
    removed = sweep_other_readers(parent, own, now=now)
    assert sorted(p.name for p in removed) == ["parameters-old.marshal", "reader-stale"]
    assert sorted(p.name for p in parent.iterdir()) == ["notes.txt", "reader-own", "reader-recent"]
    # a folder one of whose entries was written lately stays
    os.utime(recent, (old, old))
    assert sweep_other_readers(parent, own, now=now) == []
