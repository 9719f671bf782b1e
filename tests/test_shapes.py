"""Properties of the procedural shapes data set and of the shipped ShapesNet weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engines.models import shapes

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
SAMPLE_PNGS = sorted(p for p in shapes.SAMPLES_DIR.glob("shapes_*.png")
                     if not p.name.endswith(".mask.png"))


def scenes(n: int, seed: int = 3):
    """`n` scenes drawn from one generator."""
    rng = np.random.default_rng(seed)
    return [shapes.sample_scene(rng) for _ in range(n)]


@pytest.fixture(scope="module")
def net():
    return shapes.load_shapes_net()


@pytest.fixture(scope="module")
def test_set():
    return shapes.make_dataset(300, shapes.TEST_SEED)


def predict(net, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(shapes.normalize(images)).argmax(1)


# --- the generator ---------------------------------------------------------------------------


def test_dataset_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b, c = (shapes.make_dataset(20, seed) for seed in (7, 7, 8))
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    assert not torch.equal(a[0], c[0])


def test_a_shorter_dataset_is_a_prefix_of_a_longer_one_with_the_same_seed():
    short, long = shapes.make_dataset(5, 11), shapes.make_dataset(12, 11)
    for x, y in zip(short, long):
        assert torch.equal(x, y[:5])


def test_images_are_float_in_the_unit_range_with_the_documented_shapes():
    images, labels, masks = shapes.make_dataset(30, 1)
    size = shapes.IMAGE_SIZE
    assert images.shape == (30, 3, size, size) and images.dtype == torch.float32
    assert labels.shape == (30,) and labels.dtype == torch.int64
    assert masks.shape == (30, size, size) and masks.dtype == torch.bool
    assert images.min() >= 0 and images.max() <= 1


def test_make_sample_returns_numpy_image_label_and_mask():
    image, label, mask = shapes.make_sample(np.random.default_rng(0))
    assert image.shape == (3, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE) and image.dtype == np.float32
    assert isinstance(label, int) and 0 <= label < len(shapes.CLASSES)
    assert mask.shape == image.shape[1:] and mask.dtype == bool


def test_every_mask_is_a_nonempty_part_of_the_image_clear_of_the_border():
    _, _, masks = shapes.make_dataset(200, 2)
    area = masks.flatten(1).sum(1)
    assert area.min() >= 30 and area.max() < masks[0].numel() // 2
    border = masks[:, 0].any() | masks[:, -1].any() | masks[:, :, 0].any() | masks[:, :, -1].any()
    assert not border


def test_drawing_the_scene_without_its_object_changes_exactly_the_masked_pixels():
    for scene in scenes(150):
        with_object, mask = shapes.render_scene(scene)
        without_object, same_mask = shapes.render_scene(scene, with_object=False)
        changed = (with_object != without_object).any(axis=0)
        np.testing.assert_array_equal(changed, mask)
        np.testing.assert_array_equal(same_mask, mask)


def test_the_object_differs_from_what_it_covers_by_at_least_0_15_in_mean_luminance():
    for scene in scenes(150, seed=4):
        with_object, mask = shapes.render_scene(scene)
        without_object, _ = shapes.render_scene(scene, with_object=False)
        luma_gap = np.abs(np.tensordot(LUMA, with_object - without_object, axes=1))  # (H, W)
        assert luma_gap[mask].mean() >= 0.15


def test_labels_cover_all_ten_classes_over_a_few_hundred_samples():
    _, labels, _ = shapes.make_dataset(300, 5)
    assert len(shapes.CLASSES) == 10 == len(set(shapes.CLASSES))
    assert torch.bincount(labels, minlength=10).min() >= 10


def test_the_mask_of_each_class_is_the_shape_drawn_at_the_scene_pose():
    for scene in scenes(20, seed=6):
        _, mask = shapes.render_scene(scene)
        expected = shapes.shape_mask(scene.label, scene.center, scene.radius, scene.angle,
                                     scene.size)
        np.testing.assert_array_equal(mask, expected)


# --- the shipped network ---------------------------------------------------------------------


def test_shipped_weights_are_a_plain_state_dict_under_3_mb():
    state = torch.load(shapes.WEIGHTS_PATH, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert shapes.WEIGHTS_PATH.stat().st_size < 3e6


def test_loaded_net_is_in_eval_mode_and_maps_images_to_ten_logits(net):
    assert not net.training
    x = shapes.normalize(torch.rand(2, 3, shapes.IMAGE_SIZE, shapes.IMAGE_SIZE))
    with torch.no_grad():
        assert net(x).shape == (2, len(shapes.CLASSES))


def test_metadata_describes_the_module_classes_size_and_normalisation():
    meta = shapes.load_metadata()
    assert tuple(meta["classes"]) == shapes.CLASSES
    assert meta["image_size"] == shapes.IMAGE_SIZE
    assert tuple(meta["mean"]) == shapes.MEAN and tuple(meta["std"]) == shapes.STD
    assert meta["test_seed"] == shapes.TEST_SEED and meta["test_size"] == shapes.TEST_SIZE


def test_net_reaches_90_percent_on_a_fresh_test_set_agreeing_with_the_metadata(net, test_set):
    images, labels, _ = test_set
    accuracy = (predict(net, images) == labels).float().mean().item()
    assert accuracy >= 0.9
    assert abs(accuracy - shapes.load_metadata()["test_accuracy"]) <= 0.03


def test_there_are_four_sample_images_of_distinct_classes():
    names = {p.stem.removeprefix("shapes_") for p in SAMPLE_PNGS}
    assert len(SAMPLE_PNGS) == 4 and names <= set(shapes.CLASSES)


@pytest.mark.parametrize("path", SAMPLE_PNGS, ids=lambda p: p.name)
def test_sample_png_is_classified_correctly_and_has_a_binary_mask(net, path):
    rgb = Image.open(path)
    mask = Image.open(path.with_name(path.stem + ".mask.png"))
    assert rgb.mode == "RGB" and rgb.size == (shapes.IMAGE_SIZE,) * 2
    assert mask.mode == "L" and set(np.unique(np.asarray(mask))) == {0, 255}
    image = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)  # (3, H, W)
    predicted = shapes.CLASSES[predict(net, image[None]).item()]
    assert predicted == path.stem.removeprefix("shapes_")


def test_write_samples_reproduces_the_shipped_pngs(tmp_path):
    for new in shapes.write_samples(tmp_path):
        shipped = shapes.SAMPLES_DIR / new.name
        np.testing.assert_array_equal(np.asarray(Image.open(new)), np.asarray(Image.open(shipped)))
        mask_name = new.stem + ".mask.png"
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / mask_name)),
                                      np.asarray(Image.open(shapes.SAMPLES_DIR / mask_name)))
