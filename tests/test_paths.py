import numpy as np
import pytest
from trees import nnx_state

import safegene_jax as sg
from safegene_jax.core.paths import check_same_structure, first_difference


def test_nnx_value_attribute_is_dropped():
    paths, _, _ = sg.flatten_with_paths(nnx_state())
    assert "layers.0.attn.kernel" in paths and not any(p.endswith(".value") for p in paths)


def test_dict_key_named_value_is_kept():
    paths, _, _ = sg.flatten_with_paths({"attn": {"value": np.ones(1)}})
    assert paths == ["attn.value"]


def test_duplicate_path_strings_rejected():
    with pytest.raises(sg.TreeMismatchError, match="share the path 'a.b'"):
        sg.flatten_with_paths({"a.b": np.ones(1), "a": {"b": np.ones(1)}})


def test_first_difference_messages():
    assert first_difference(["a", "b"], ["a", "b"], "x", "y") == ""
    assert "x has 'c'" in first_difference(["a", "c"], ["a", "d"], "x", "y")
    assert "y has 'z'" in first_difference(["a"], ["a", "z"], "x", "y")
    assert "x has 'z'" in first_difference(["a", "z"], ["a"], "x", "y")
    assert "leaf 0" in first_difference(["b", "a"], ["a", "b"], "x", "y")


def test_check_same_structure_across_container_types():
    with pytest.raises(sg.TreeMismatchError, match="different tree structures"):
        check_same_structure({"a": [np.ones(1)]}, {"a": [np.ones(1), np.ones(1)]}, "left", "right")
