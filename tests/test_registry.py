"""Every pluggable family sits behind one registry helper: the documented names are there, an
unknown name is a one-line InputError listing the choices, and a name cannot be taken twice."""

from __future__ import annotations

import pytest

from facesuite.classify.gender import GENDER_KINDS
from facesuite.embed import EMBEDDERS
from facesuite.errors import InputError
from facesuite.gallery.base import BACKENDS
from facesuite.registry import Registry
from facesuite.route.restore import RESTORERS


def test_each_family_lists_what_the_readme_documents() -> None:
    assert sorted(EMBEDDERS.list()) == ["dlib", "dlib-int8", "dlib-onnx", "dlib-torch"]
    assert sorted(GENDER_KINDS.list()) == ["backbone", "cnn", "embedding", "finetune"]
    assert {"none", "median5+median5", "switch10-open5", "unsharp", "exposure"} <= set(RESTORERS.list())  # the shipped routes' steps
    assert sorted(BACKENDS.list()) == ["folder", "milvus"]


def test_unknown_names_are_input_errors_listing_the_choices() -> None:
    with pytest.raises(InputError, match=r"unknown embedder 'dlib-x'; choose from .*dlib-torch"):
        EMBEDDERS.create("dlib-x")
    assert "sharpen9" not in RESTORERS and "median7" in RESTORERS


def test_a_name_is_registered_once() -> None:
    registry: Registry = Registry("thing")
    registry.register("a")(lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(lambda: 2)
    assert registry.create("a") == 1 and registry.list() == ["a"] and len(registry) == 1
