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
