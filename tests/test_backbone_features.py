"""The training features cache gives what today's detector and embedder give, or is rebuilt."""

from pathlib import Path

import numpy as np
from facesuite.detect import DetectorSettings
from facesuite.detect.extract import FaceExtractor
from facesuite.embed import get_embedder
from facesuite.train.backbone_features import SCALE_FLOOR, pass_features, standard_scaler


def _plain_embeddings(paths: list[Path], extractor: FaceExtractor, embedder) -> np.ndarray:
    chips = [item.chip for item in extractor.iter_crops(paths, embedder.chip_spec)]
    unit, _ = embedder.describe(chips, maps=False)
    return unit


def test_a_cache_made_by_another_detection_is_computed_again(utkface: Path, tmp_path: Path) -> None:
    # UTKFace crops are where detection rules differ most: the face fills the frame.
    paths = sorted(utkface.glob("*.jpg"))[:6]
    embedder = get_embedder()
    detected = FaceExtractor(use_cache=False)
    # A cache written from other chips: the centre box instead of the detected face.
    centre = FaceExtractor(DetectorSettings(assume_cropped=True), use_cache=False)
    stale, _ = pass_features(paths, centre, embedder, tmp_path)
    fresh = _plain_embeddings(paths, detected, embedder)
    assert np.min(np.sum(stale.of("plain")[:, -128:] * fresh, axis=1)) < 0.99  # the two chips really differ

    features, _ = pass_features(paths, detected, embedder, tmp_path)

    reread = features.of("plain")[:, -128:]
    assert features.paths == [str(p) for p in paths]
    assert np.allclose(reread, fresh, atol=2e-3)
    assert features.digest != stale.digest
    assert len(list(tmp_path.glob("features-*.npz"))) == 1  # the stale file is gone
    # The rebuilt cache is now read back as it is.
    again, _ = pass_features(paths, detected, embedder, tmp_path)
    assert again.digest == features.digest


def test_no_feature_is_divided_by_a_near_zero_spread(utkface: Path, tmp_path: Path) -> None:
    paths = sorted(utkface.glob("*.jpg"))[:12]
    features, _ = pass_features(paths, FaceExtractor(use_cache=False), get_embedder(), tmp_path)
    x = features.of("plain")
    spread = x.std(axis=0)
    assert np.min(spread) < 0.01 * np.median(spread)  # map cells that rarely fire exist

    scaler = standard_scaler(x)

    floor = SCALE_FLOOR * np.median(np.where(spread > 0, spread, 1.0))
    assert np.all(scaler.scale_ >= floor - 1e-6)
    wide = spread > floor
    assert np.allclose(scaler.scale_[wide], spread[wide], rtol=1e-4)
    assert np.max(np.abs(scaler.transform(x))) <= np.max(np.abs(x - x.mean(axis=0))) / floor + 1e-3


def test_an_unreadable_cache_file_is_rebuilt(utkface: Path, tmp_path: Path) -> None:
    paths = sorted(utkface.glob("*.jpg"))[:4]
    embedder = get_embedder()
    broken = tmp_path / f"features-{embedder.space}-0000000000000000.npz"
    broken.write_text("not an npz file")

    features, _ = pass_features(paths, FaceExtractor(use_cache=False), embedder, tmp_path)

    assert not broken.exists()
    assert np.allclose(features.of("plain")[:, -128:], _plain_embeddings(paths, FaceExtractor(use_cache=False), embedder), atol=2e-3)
