import re

import pytest
import torch

from cxr_augment.classify.models import (
    DROP_RATES,
    ModelConfig,
    build_model,
    feature_extractor,
    head,
    load_pretrained,
)


@pytest.mark.parametrize(
    ("name", "features"),
    [("densenet121", 1024), ("densenet161", 1472), ("tiny_densenet", None)],
)
def test_one_channel_models_give_one_logit(name, features):
    model = build_model(ModelConfig(name))
    model.eval()
    x = torch.randn(2, 1, 97, 80)
    with torch.no_grad():
        assert model(x).shape == (2, 1)
        f = feature_extractor(model)(x)
    if features:
        assert f.shape == (2, features)
    assert head(model).in_features == f.shape[1]


def test_densenet161_uses_the_thesis_settings():
    model = build_model(ModelConfig("densenet161"))
    assert model.features.conv0.out_channels == 64  # num_init_features 64 (torchvision: 96)
    assert model.features.denseblock1.denselayer1.drop_rate == 0.2  # thesis 4.2, the default
    assert model.features.denseblock1.denselayer1.conv1.out_channels == 4 * 32  # bn_size * growth
    assert len(model.features.denseblock3) == 36


def test_inception_resnet_v2_from_timm_one_channel():
    model = build_model(ModelConfig("inception_resnet_v2"))
    model.eval()
    assert model.head_drop.p == 0.2  # thesis 4.2, the default
    with torch.no_grad():
        assert model(torch.randn(1, 1, 97, 80)).shape == (1, 1)
    assert feature_extractor(model)(torch.randn(1, 1, 97, 80)).shape == (1, 1536)


@pytest.mark.parametrize("name", ["densenet161", "inception_resnet_v2", "tiny_densenet"])
def test_a_drop_rate_of_zero_is_zero_and_none_is_the_thesis_default(name):
    assert ModelConfig(name, drop_rate=0).drop_rate == 0.0
    assert ModelConfig(name, drop_rate=0.0).drop_rate == 0.0
    assert ModelConfig(name).drop_rate == DROP_RATES.get(name, 0.0)
    assert ModelConfig(name, drop_rate=0.35).drop_rate == 0.35
    if name == "inception_resnet_v2":
        model = build_model(ModelConfig(name, drop_rate=0))
        assert model.head_drop.p == 0.0
    else:
        model = build_model(ModelConfig(name, drop_rate=0))
        rates = {m.drop_rate for m in model.modules() if hasattr(m, "drop_rate")}
        assert rates == {0.0}


def test_drop_rates_outside_zero_to_one_are_refused():
    with pytest.raises(ValueError, match="drop_rate"):
        ModelConfig("densenet121", drop_rate=1.0)


def test_multiclass_and_14_output_heads():
    assert build_model(ModelConfig("tiny_densenet", outputs=3))(
        torch.randn(1, 1, 40, 32)
    ).shape == (1, 3)
    assert build_model(ModelConfig("chexnet"))(torch.randn(1, 1, 64, 64)).shape == (1, 14)


def test_missing_weights_say_which_file_to_put_where(tmp_path):
    path = tmp_path / "weights" / "densenet121.pth"
    with pytest.raises(FileNotFoundError, match=r"densenet121-a639ec97\.pth") as err:
        build_model(ModelConfig("densenet121", pretrained_path=str(path)))
    assert str(path) in str(err.value)


def test_local_rgb_weights_are_summed_into_one_channel(tmp_path):
    source = build_model(ModelConfig("tiny_densenet"))
    state = source.state_dict()
    rgb = state["features.conv0.weight"].repeat(1, 3, 1, 1) / 3.0
    state["features.conv0.weight"] = rgb
    path = tmp_path / "w.pt"
    torch.save(state, path)
    model = build_model(ModelConfig("tiny_densenet", pretrained_path=str(path)))
    torch.testing.assert_close(model.features.conv0.weight, source.features.conv0.weight)
    torch.testing.assert_close(model.classifier.weight, source.classifier.weight)


# --- ImageNet state_dicts, as torchvision and timm write them (random weights: no downloads)


def _old_torchvision_keys(state: dict) -> dict:
    """The key names of torchvision's DenseNet download files (``norm.1`` for ``norm1``)."""
    pattern = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
    return {pattern.sub(r"\1.\2.", k): v for k, v in state.items()}


def _assert_body_landed(model, state, first_conv, head_prefix):
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith(head_prefix) or key == first_conv:
            continue
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(own[first_conv], state[first_conv].sum(dim=1, keepdim=True))


def test_torchvision_imagenet_densenet121_with_old_key_names_loads(tmp_path):
    from torchvision.models import densenet121

    torch.manual_seed(0)
    state = densenet121().state_dict()  # 3 channels, 1000 classes
    old = _old_torchvision_keys(state)
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    torch.save(old, tmp_path / "densenet121-a639ec97.pth")
    torch.manual_seed(1)
    fresh_head = build_model(ModelConfig("densenet121")).classifier.weight.clone()
    torch.manual_seed(1)
    model = build_model(
        ModelConfig("densenet121", pretrained_path=str(tmp_path / "densenet121-a639ec97.pth"))
    )
    _assert_body_landed(model, state, "features.conv0.weight", "classifier.")
    assert model.features.conv0.weight.shape == (64, 1, 7, 7)
    # the 1000-class ImageNet head is dropped: the model keeps its fresh one-logit head
    assert model.classifier.weight.shape == (1, 1024)
    torch.testing.assert_close(model.classifier.weight, fresh_head, rtol=0, atol=0)


def test_imagenet_densenet121_initialises_chexnet_and_a_chexnet_file_keeps_its_head(tmp_path):
    from torchvision.models import densenet121

    torch.manual_seed(0)
    imagenet = densenet121().state_dict()
    torch.save(imagenet, tmp_path / "imagenet.pth")
    model = build_model(ModelConfig("chexnet", pretrained_path=str(tmp_path / "imagenet.pth")))
    _assert_body_landed(model, imagenet, "features.conv0.weight", "classifier.")
    assert model.classifier.weight.shape == (14, 1024)
    # a CheXNet re-implementation's file: DataParallel prefix, Sequential(Linear, Sigmoid) head
    torch.manual_seed(2)
    trained = densenet121(num_classes=14).state_dict()
    wrapped = {
        "module.densenet121." + k.replace("classifier.", "classifier.0."): v
        for k, v in _old_torchvision_keys(trained).items()
    }
    torch.save({"state_dict": wrapped}, tmp_path / "chexnet.pth.tar")
    cfg = ModelConfig("chexnet", pretrained_path=str(tmp_path / "chexnet.pth.tar"))
    model = build_model(ModelConfig("chexnet"))
    report = load_pretrained(model, cfg)
    assert report["head"] == "loaded"
    torch.testing.assert_close(model.classifier.weight, trained["classifier.weight"])
    _assert_body_landed(model, trained, "features.conv0.weight", "classifier.")


@pytest.mark.slow
def test_torchvision_imagenet_densenet161_loads_into_its_architecture_only(tmp_path):
    from torchvision.models import densenet161

    torch.manual_seed(0)
    state = densenet161().state_dict()
    path = tmp_path / "densenet161-8d451a50.pth"
    torch.save(_old_torchvision_keys(state), path)
    model = build_model(ModelConfig("densenet161_torchvision", pretrained_path=str(path)))
    _assert_body_landed(model, state, "features.conv0.weight", "classifier.")
    assert model.features.denseblock1.denselayer1.drop_rate == 0.2
    # the thesis's DenseNet-161 (growth 32, 64 initial features) is another network
    with pytest.raises(ValueError, match="densenet161_torchvision") as err:
        build_model(ModelConfig("densenet161", pretrained_path=str(path)))
    assert str(path) in str(err.value) and "another shape" in str(err.value)


@pytest.mark.slow
def test_timm_imagenet_inception_resnet_v2_loads(tmp_path):
    import timm

    torch.manual_seed(0)
    state = timm.create_model("inception_resnet_v2", pretrained=False).state_dict()
    assert state["conv2d_1a.conv.weight"].shape[1] == 3 and state["classif.weight"].shape[0] == 1000
    path = tmp_path / "inception_resnet_v2.pth"
    torch.save(state, path)
    model = build_model(ModelConfig("inception_resnet_v2", pretrained_path=str(path)))
    _assert_body_landed(model, state, "conv2d_1a.conv.weight", "classif.")
    assert model.classif.weight.shape == (1, 1536)
    # the same weights from a .safetensors file (timm's hub cache)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "model.safetensors")
    again = build_model(
        ModelConfig("inception_resnet_v2", pretrained_path=str(tmp_path / "model.safetensors"))
    )
    torch.testing.assert_close(again.conv2d_7b.conv.weight, state["conv2d_7b.conv.weight"])


def test_a_file_for_another_network_is_refused_with_its_name(tmp_path):
    from torchvision.models import densenet121

    path = tmp_path / "densenet121.pth"
    torch.save(densenet121().state_dict(), path)
    with pytest.raises(ValueError, match="does not fit model tiny_densenet") as err:
        build_model(ModelConfig("tiny_densenet", pretrained_path=str(path)))
    assert str(path) in str(err.value)
    torch.save({"features.conv0.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ValueError, match="tensors missing"):
        build_model(ModelConfig("densenet121", pretrained_path=str(path)))
