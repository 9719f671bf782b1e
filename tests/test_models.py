"""The model catalogue: offline models load and classify, missing weights are explained, and a
user's model file is only ever read as TorchScript."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import engines
from engines.models import catalogue as models

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_efficientnet_sees_a_cat_in_chelsea(efficientnet, chelsea):
    assert chelsea.shape == (1, 3, 224, 224) and 0 <= chelsea.min() and chelsea.max() <= 1
    with torch.no_grad():
        top = efficientnet.model(chelsea).argmax(1).item()
    assert efficientnet.categories[top] in CAT_CLASSES
    assert len(efficientnet.categories) == 1000


def test_loaded_models_are_frozen_in_eval_mode(efficientnet):
    assert all(not p.requires_grad for p in efficientnet.model.parameters())
    assert not any(m.training for m in efficientnet.model.modules())


def test_the_model_normalises_inside(efficientnet):
    """Black is 0 for every model: the wrapper applies the catalogue's mean and std."""
    spec = efficientnet.spec
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        wrapped = efficientnet.model(x)
        raw = efficientnet.model.net((x - torch.tensor(spec.mean).view(1, 3, 1, 1)) / torch.tensor(spec.std).view(1, 3, 1, 1))
    torch.testing.assert_close(wrapped, raw)


def test_preprocess_crops_to_the_input_size(efficientnet):
    from PIL import Image

    tall = Image.new("RGB", (300, 900), (255, 0, 0))
    x = efficientnet.preprocess(tall)
    assert x.shape == (1, 3, 224, 224)
    torch.testing.assert_close(x[0, 0], torch.ones(224, 224))


def test_catalogue_lists_every_model_with_metadata():
    specs = engines.catalogue()
    for name in ["efficientnet_lite0", "shapes_cnn", "resnet18", "resnet50", "mobilenet_v3_large", "convnext_tiny", "vit_b_16"]:
        spec = specs[name]
        assert spec.input_size > 0 and spec.resize >= spec.input_size and len(spec.mean) == 3 and spec.source
    assert next(iter(specs)) == engines.DEFAULT_MODEL
    assert engines.model_status("efficientnet_lite0")[0]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(models, "_reachable", lambda url, timeout=3.0: False)
    return tmp_path


def test_missing_torchvision_weights_are_explained_not_a_traceback(empty_hub):
    ready, message = engines.model_status("resnet18")
    assert not ready and "not on this machine" in message and "resnet18-" in message
    with pytest.raises(engines.ModelUnavailable, match="cannot be reached"):
        engines.load_model("resnet18", device="cpu")


def test_cached_torchvision_weights_load_offline(empty_hub):
    """The real loading path, fed a checkpoint placed where torchvision caches downloads."""
    import torchvision

    spec = engines.catalogue()["resnet18"]
    spec.weights_file.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), spec.weights_file)
    assert engines.model_status("resnet18")[0]
    loaded = engines.load_model("resnet18", device="cpu")
    assert len(loaded.categories) == 1000 and loaded.input_size == 224
    result = engines.explain(loaded, torch.rand(1, 3, 224, 224), "gradient")
    assert result.map.shape == (1, 224, 224)


def test_unknown_model_names_the_catalogue():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        engines.load_model("alexnet")


class Tiny(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, classes)

    def forward(self, x):
        return self.fc(self.conv(x).mean(dim=(2, 3)))


def torchscript_bytes(classes=3) -> bytes:
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(Tiny(classes)), buffer)
    return buffer.getvalue()


def test_a_torchscript_model_with_its_class_list_loads_and_explains():
    loaded = engines.load_torchscript(torchscript_bytes(), "cat\ndog\n\nbird\n", input_size=32)
    assert loaded.categories == ["cat", "dog", "bird"]
    assert all(not p.requires_grad for p in loaded.model.parameters())
    result = engines.explain(loaded, torch.rand(2, 3, 32, 32), "positive")
    assert result.map.shape == (2, 32, 32) and result.logits.shape == (2, 3)


def test_a_json_class_list_is_accepted():
    loaded = engines.load_torchscript(torchscript_bytes(), b'["a", "b", "c"]', input_size=16)
    assert loaded.categories == ["a", "b", "c"]


def test_a_class_list_of_the_wrong_length_is_refused():
    with pytest.raises(engines.ModelFileError, match="3 names|2 names"):
        engines.load_torchscript(torchscript_bytes(classes=3), "a\nb\n", input_size=16)


class Payload:
    """A pickle that would create a file if anything unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_pickled_file_is_refused_and_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    for data in (pickle.dumps(Payload(marker)), _torch_save_bytes(Payload(marker))):
        with pytest.raises(engines.ModelFileError, match="not a TorchScript model"):
            engines.load_torchscript(data, "a\nb\nc", input_size=16)
    assert not marker.exists()


def _torch_save_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, categories, size, words",
    [
        (b"", "a", 16, "empty"),
        (b"not a model at all", "a\nb\nc", 16, "not a TorchScript"),
        (None, "", 16, "class list is empty"),
        (None, "a\nb\nc", 4, "input size"),
    ],
)
def test_bad_model_files_get_clear_messages(data, categories, size, words):
    with pytest.raises(engines.ModelFileError, match=words):
        engines.load_torchscript(torchscript_bytes() if data is None else data, categories, input_size=size)
