"""The CUDA path gives the CPU's answers: embedding and the exact neighbour search (device="auto"
picks CUDA when present). Runs only where CUDA exists; elsewhere each test is skipped."""
import numpy as np
import pytest
import torch

from ood_core import Embedder, FeatureScorer, cifar10

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_auto_device_is_cuda():
    scorer = FeatureScorer().fit(np.random.default_rng(0).random((50, 8)))
    assert scorer.device_.type == "cuda"
    assert Embedder().device_.type == "cuda"


def test_exact_search_on_cuda_gives_the_cpu_scores():
    rng = np.random.default_rng(0)
    X = np.abs(rng.standard_normal((5000, 1280))).astype(np.float32)
    Q = np.abs(rng.standard_normal((1000, 1280))).astype(np.float32)
    cpu = FeatureScorer(device="cpu").fit(X)
    gpu = FeatureScorer(device="cuda").fit(X)
    np.testing.assert_allclose(gpu.fit_scores_, cpu.fit_scores_, atol=1e-4)
    np.testing.assert_allclose(gpu.score(Q), cpu.score(Q), atol=1e-4)


def test_embedding_on_cuda_gives_the_cpu_features_and_scores(cifar_zip):
    images = cifar10(cifar_zip)
    images = images.subset(np.arange(0, len(images), len(images) // 256)[:256])
    cpu = Embedder(model="lite0", image_size=128, device="cpu").embed(images)
    gpu = Embedder(model="lite0", image_size=128, device="cuda").embed(images)
    np.testing.assert_allclose(gpu, cpu, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(FeatureScorer(device="cpu").fit(gpu).fit_scores_,
                               FeatureScorer(device="cpu").fit(cpu).fit_scores_, atol=1e-4)
