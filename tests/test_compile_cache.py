"""The persistent compilation cache: turned on at a folder, kept when the user set one, off with ''."""

import json
import os
import subprocess
import sys

CHILD = """
import json, sys
import jax
from safegene_jax.runtime.compile_cache import enable
first = enable(sys.argv[1])
second = enable(sys.argv[2])  # a cache already in use is kept
print(json.dumps([first, second, jax.config.jax_compilation_cache_dir]))
"""


def child(*args, env_dir=None):
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    if env_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = env_dir
    out = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_enable_sets_the_folder_and_keeps_it(tmp_path):
    first, second, in_use = child(str(tmp_path / "a"), str(tmp_path / "b"))
    assert first == second == in_use == str(tmp_path / "a")
    assert (tmp_path / "a").is_dir() and not (tmp_path / "b").exists()


def test_empty_path_leaves_it_off_and_the_users_setting_wins(tmp_path):
    assert child("", "") == [None, None, None]
    mine = str(tmp_path / "mine")
    assert child(str(tmp_path / "a"), "", env_dir=mine) == [mine, mine, mine]
    assert not (tmp_path / "a").exists()


def test_the_pipeline_config_names_it():
    from safegene_jax.pipeline.config import load_config
    from safegene_jax.runtime.compile_cache import DEFAULT

    assert load_config().compile_cache == DEFAULT
    assert load_config(overrides=["compile_cache="]).compile_cache == ""
