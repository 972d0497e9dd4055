import pytest
import torch

from cxr_augment.models import ModelConfig, build_model, feature_extractor, head


@pytest.mark.parametrize(
    ("name", "features"),
    [("densenet121", 1024), ("densenet161", 1472), ("chexnet", 1024), ("tiny_densenet", None)],
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
    model = build_model(ModelConfig("densenet161", drop_rate=0.2))
    assert model.features.conv0.out_channels == 64  # num_init_features 64 (torchvision: 96)
    assert model.features.denseblock1.denselayer1.drop_rate == 0.2
    assert model.features.denseblock1.denselayer1.conv1.out_channels == 4 * 32  # bn_size * growth
    assert len(model.features.denseblock3) == 36


def test_inception_resnet_v2_from_timm_one_channel():
    model = build_model(ModelConfig("inception_resnet_v2", drop_rate=0.2))
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 97, 80)).shape == (1, 1)
    assert feature_extractor(model)(torch.randn(1, 1, 97, 80)).shape == (1, 1536)


def test_multiclass_and_14_output_heads():
    assert build_model(ModelConfig("tiny_densenet", outputs=3))(
        torch.randn(1, 1, 40, 32)
    ).shape == (1, 3)
    assert build_model(ModelConfig("chexnet", outputs=14))(torch.randn(1, 1, 64, 64)).shape == (
        1,
        14,
    )


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
