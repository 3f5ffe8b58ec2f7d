"""GGUF export: our loader and transformers' GGUF loader read back the same model, tokenizer and chat template."""

import dataclasses
import os
import pathlib
import stat

import gguf
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from gguf.quants import dequantize, quantize
from gguf_fixture import write_gemma3_gguf
from tiny import GEMMA_NORMS, tiny_lm
from tokenizers import Regex, pre_tokenizers

from safegene_jax.core.errors import ConfigError, NonFiniteError, SafeGeneError, TokenizerError
from safegene_jax.interop.gguf_export import (
    SUPPORTED_GGUF_TYPES,
    TOKENIZER_PROBES,
    export_gguf,
    hf_to_gguf_name,
    tensor_type,
    tokenizer_metadata,
)
from safegene_jax.models import Gemma3Config, Gemma3ForCausalLM, LlamaConfig, LlamaForCausalLM, LoadedModel, load_model
from safegene_jax.models.gguf_file import GGUFFile, gguf_to_hf_name, permute_qk
from safegene_jax.models.hf import hf_state_dict
from safegene_jax.models.tokenizer import GEMMA_CHAT_TEMPLATE, tokenizer_from_gguf_fields

TEXT = "Hello world, café crème 🦙 and\n\n  spaces 123"
PROBES = (*TOKENIZER_PROBES, "<|im_start|>user\nhi<|im_end|>\n", "x")
# max |logit difference| / max |logit| (~0.8) measured on the tiny models, seeds 0-4: F16 2.1e-4, BF16 2.1e-3,
# Q8_0 5.7e-3 (4e-3 with F16 fallbacks); F32 is bit-exact. Bounds leave a 3.5-5x margin.
RELATIVE_TOLERANCE = {"F32": 1e-5, "F16": 1e-3, "BF16": 1e-2, "Q8_0": 2e-2}


# ---- helpers -------------------------------------------------------------------------------------


def random_lm(tok, *, seed=0, scale=0.05, **changes) -> LoadedModel:
    """A tiny model on the fixture tokenizer; every weight (norms and biases too) perturbed away from its init."""
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        eos_token_id=(tok.eos_token_id,),
        pad_token_id=tok.pad_token_id,
    ).replace(**changes)
    model = LlamaForCausalLM(cfg, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, noisy))
    return LoadedModel(model, cfg, tok, f"random-{cfg.model_type}")


def logits(lm: LoadedModel, text: str = TEXT) -> np.ndarray:
    ids = jnp.asarray([lm.tokenizer.encode(text)], jnp.int32)
    return np.asarray(lm.apply(lm.params, ids))


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def tensor_types(path) -> dict[str, str]:
    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}


def folder_listing(folder: pathlib.Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.fixture(scope="module")
def tied(tmp_path_factory):
    return tiny_lm(tmp_path_factory.mktemp("tied") / "model")


@pytest.fixture(scope="module")
def tied_f32(tied, tmp_path_factory):
    return export_gguf(tied, tmp_path_factory.mktemp("out") / "tied.gguf")


# ---- round trips through our loader ----------------------------------------------------------------


def test_f32_round_trip_gives_the_same_logits_tokenizer_and_template(tied, tied_f32):
    back = load_model(tied_f32)
    assert np.abs(logits(back) - logits(tied)).max() <= 1e-5
    for field in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "head_dim", "rope_theta"):
        assert getattr(back.config, field) == getattr(tied.config, field)
    assert back.config.num_key_value_heads == tied.config.num_key_value_heads
    assert back.config.tie_word_embeddings and back.config.eos_token_id == tied.config.eos_token_id
    assert back.config.rms_norm_eps == pytest.approx(tied.config.rms_norm_eps, rel=1e-6)  # stored as float32
    for text in PROBES:
        for add in (False, True):
            assert back.tokenizer.encode(text, add_special_tokens=add) == tied.tokenizer.encode(
                text, add_special_tokens=add
            ), text
    assert back.tokenizer.chat_template == tied.tokenizer.chat_template
    messages = [{"role": "user", "content": "Café? 🦙"}, {"role": "assistant", "content": "Oui."}]
    assert back.tokenizer.apply_chat_template(messages, tokenize=False) == tied.tokenizer.apply_chat_template(
        messages, tokenize=False
    )
    assert (back.tokenizer.bos_token, back.tokenizer.eos_token, back.tokenizer.pad_token) == (
        tied.tokenizer.bos_token,
        tied.tokenizer.eos_token,
        tied.tokenizer.pad_token,
    )


def test_file_layout_follows_llama_cpp(tied, tied_f32):
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(tied_f32.stat().st_mode) == 0o666 & ~umask  # an ordinary file, not mkstemp's 0600
    reader = gguf.GGUFReader(tied_f32)
    field = {k: f.contents() for k, f in reader.fields.items()}
    assert field["general.architecture"] == "llama" and field["general.file_type"] == 0
    assert field["llama.block_count"] == 2 and field["llama.embedding_length"] == 32
    assert field["llama.attention.head_count"] == 4 and field["llama.attention.head_count_kv"] == 2
    assert field["llama.rope.dimension_count"] == 8 and field["llama.vocab_size"] == 366
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "smollm"
    assert field["tokenizer.ggml.add_bos_token"] is False and len(field["tokenizer.ggml.tokens"]) == 366
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied embeddings
    assert {"token_embd.weight", "output_norm.weight", "blk.1.ffn_down.weight"} <= names
    # Q/K rows are stored in llama.cpp's permuted order; V is not touched
    hf = hf_state_dict(tied.params)
    read = GGUFFile(tied_f32).read
    np.testing.assert_array_equal(
        read("blk.0.attn_q.weight"), permute_qk(hf["model.layers.0.self_attn.q_proj.weight"], 4)
    )
    np.testing.assert_array_equal(
        read("blk.0.attn_k.weight"), permute_qk(hf["model.layers.0.self_attn.k_proj.weight"], 2)
    )
    np.testing.assert_array_equal(read("blk.0.attn_v.weight"), hf["model.layers.0.self_attn.v_proj.weight"])


@pytest.mark.parametrize("dtype", ["F16", "BF16", "Q8_0"])
def test_reduced_types_round_trip_within_measured_tolerance(tied, tied_f32, tmp_path, dtype):
    path = export_gguf(tied, tmp_path / "m.gguf", dtype=dtype.lower())
    types = tensor_types(path)
    assert {t for n, t in types.items() if n.endswith("norm.weight")} == {"F32"}
    assert {t for n, t in types.items() if not n.endswith("norm.weight")} == {dtype}  # all rows are 32 or 64 long
    assert path.stat().st_size < tied_f32.stat().st_size
    back = load_model(path)
    assert relative_error(logits(back), logits(tied)) <= RELATIVE_TOLERANCE[dtype]
    assert back.tokenizer.encode(TEXT) == tied.tokenizer.encode(TEXT)
    # each weight loads exactly as its own rounding (blocks run along rows, so they commute with the Q/K row order)
    qtype = gguf.GGMLQuantizationType[dtype]
    want, got = hf_state_dict(tied.params), hf_state_dict(back.params)
    for name, w in want.items():
        expected = w if w.ndim == 1 else dequantize(quantize(w, qtype), qtype).reshape(w.shape)
        np.testing.assert_array_equal(got[name], expected.astype(np.float32), err_msg=name)


def test_q8_0_falls_back_to_f16_for_rows_not_a_multiple_of_32(tied, tmp_path):
    lm = random_lm(tied.tokenizer, hidden_size=48, num_attention_heads=6, num_key_value_heads=2, head_dim=8)
    path = export_gguf(lm, tmp_path / "odd.gguf", dtype="Q8_0")
    types = tensor_types(path)
    assert types["blk.0.attn_q.weight"] == "F16" and types["token_embd.weight"] == "F16"  # rows of 48
    assert types["blk.0.ffn_down.weight"] == "Q8_0" and types["output.weight"] == "F16"  # rows of 64 / 48
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert relative_error(logits(load_model(path)), logits(lm)) <= RELATIVE_TOLERANCE["Q8_0"]


@pytest.mark.parametrize(
    "changes",
    [
        {"model_type": "qwen2", "qkv_bias": True},
        {"tie_word_embeddings": False, "qkv_bias": True},  # llama with Q/K/V biases: biases permuted too
        {"head_dim": 16},  # head_dim != hidden / heads
        {"rope_theta": 5e5, "rope_scaling": (("factor", 2.0), ("rope_type", "linear"))},
        {
            "rope_scaling": (
                ("factor", 8.0),
                ("high_freq_factor", 4.0),
                ("low_freq_factor", 1.0),
                ("original_max_position_embeddings", 16),
                ("rope_type", "llama3"),
            )
        },
        {"model_type": "mistral"},
    ],
    ids=["qwen2", "llama-bias-untied", "head-dim", "rope-linear", "rope-llama3", "mistral"],
)
def test_variants_round_trip_exactly_in_f32(tied, tmp_path, changes):
    lm = random_lm(tied.tokenizer, **changes)
    path = export_gguf(lm, tmp_path / "v.gguf")
    back = load_model(path)
    text = TEXT * 3  # past original_max_position_embeddings, so llama3 scaling matters
    assert np.abs(logits(back, text) - logits(lm, text)).max() <= 1e-5
    arch = gguf.GGUFReader(path).fields["general.architecture"].contents()
    assert arch == ("qwen2" if lm.config.model_type == "qwen2" else "llama")
    assert (back.config.qkv_bias, back.config.tie_word_embeddings) == (
        lm.config.qkv_bias,
        lm.config.tie_word_embeddings,
    )


def test_bfloat16_params_export_losslessly_as_bf16(tied, tied_f32, tmp_path):
    half = load_model(tied_f32, param_dtype=jnp.bfloat16)
    back = load_model(export_gguf(half, tmp_path / "bf16.gguf", dtype="BF16"), param_dtype=jnp.bfloat16)
    want, got = hf_state_dict(half.params), hf_state_dict(back.params)
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_round_trip_of_our_own_gguf_export(tied, tied_f32, tmp_path):
    again = export_gguf(load_model(tied_f32), tmp_path / "again.gguf")
    assert np.abs(logits(load_model(again)) - logits(tied)).max() <= 1e-5


def test_unigram_vocabulary_becomes_a_llama_tokenizer(tmp_path):
    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    words = ["\u2581", "\u2581the", "\u2581cat", "\u2581sat", "at", "the", "\u2581c", "s", "a", "t", "h", "e", "c"]
    tokens = pieces + words
    fields = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": [0.0] * len(pieces) + [-float(i) for i in range(len(words))],
        "tokenizer.ggml.token_type": [2, 3, 3] + [6] * 256 + [1] * len(words),
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True,
        "tokenizer.chat_template": "{% for m in messages %}[{{ m['content'] }}]{% endfor %}",
    }
    tok = tokenizer_from_gguf_fields(lambda k, d=None: fields.get(k, d))
    lm = random_lm(tok, seed=3)
    meta = tokenizer_metadata(tok, lm.config)
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.add_space_prefix"] is True
    assert meta["tokenizer.ggml.token_type"][3:259] == [6] * 256
    back = load_model(export_gguf(lm, tmp_path / "spm.gguf"))
    for text in ("the cat sat", "  the  cat\n", "Zürich 🦙", "thecat"):
        assert back.tokenizer.encode(text) == tok.encode(text), text
    assert back.tokenizer.encode("the cat")[0] == 1  # BOS added, as the source does
    assert np.abs(logits(back, "the cat sat") - logits(lm, "the cat sat")).max() <= 1e-5


@pytest.mark.parametrize(
    "pre, split",
    [
        ("gpt2", None),
        (
            "llama-bpe",
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
            r"\s+(?!\S)|\s+",
        ),
        (
            "qwen2",
            r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
            r"\s+(?!\S)|\s+",
        ),
    ],
)
def test_pre_tokenizer_is_recognised_by_behaviour(tmp_path, pre, split):
    lm = tiny_lm(tmp_path / "m")
    backend = lm.tokenizer.backend_tokenizer
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
    assert tokenizer_metadata(lm.tokenizer, lm.config)["tokenizer.ggml.pre"] == pre
    back = load_model(export_gguf(lm, tmp_path / "m.gguf"))
    for text in PROBES:
        assert back.tokenizer.encode(text) == lm.tokenizer.encode(text), text


def test_tokenizer_with_fewer_ids_than_the_model_is_padded(tied, tmp_path):
    lm = random_lm(tied.tokenizer, vocab_size=len(tied.tokenizer) + 10)
    path = export_gguf(lm, tmp_path / "pad.gguf")
    fields = gguf.GGUFReader(path).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    assert len(tokens) == lm.config.vocab_size and tokens[-1] == f"[PAD{lm.config.vocab_size - 1}]"
    assert fields["tokenizer.ggml.token_type"].contents()[-10:] == [5] * 10
    back = load_model(path)
    assert back.config.vocab_size == lm.config.vocab_size and back.tokenizer.encode(TEXT) == lm.tokenizer.encode(TEXT)


def test_gguf_names_are_the_inverse_of_the_readers():
    names = [
        "model.embed_tokens.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.layers.11.input_layernorm.weight",
        "model.layers.11.post_attention_layernorm.weight",
        *(f"model.layers.0.self_attn.{p}_proj.{k}" for p in "qkv" for k in ("weight", "bias")),
        "model.layers.0.self_attn.o_proj.weight",
        *(f"model.layers.3.mlp.{p}_proj.weight" for p in ("gate", "up", "down")),
    ]
    for name in names:
        assert gguf_to_hf_name(hf_to_gguf_name(name)) == name
    assert hf_to_gguf_name("model.layers.0.mlp.down_proj.bias") is None


def test_tensor_types():
    assert {tensor_type((8, 64), t).name for t in SUPPORTED_GGUF_TYPES} == {"F32", "F16", "BF16", "Q8_0"}
    assert {tensor_type((64,), t).name for t in SUPPORTED_GGUF_TYPES} == {"F32"}
    assert tensor_type((8, 40), "Q8_0").name == "F16"


# ---- transformers' GGUF loader --------------------------------------------------------------------


@pytest.mark.parametrize("changes", [{}, {"model_type": "qwen2", "qkv_bias": True}], ids=["llama-tied", "qwen2"])
def test_transformers_gguf_loader_agrees(tied, tmp_path, monkeypatch, changes):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lm = tied if not changes else random_lm(tied.tokenizer, tie_word_embeddings=False, **changes)
    export_gguf(lm, tmp_path / "m.gguf")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="m.gguf", dtype=torch.float32)
    ids = lm.tokenizer.encode(TEXT)
    with torch.no_grad():
        theirs = model(torch.tensor([ids])).logits.numpy()
    assert np.abs(theirs - logits(lm)).max() <= 1e-4
    tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path), gguf_file="m.gguf")
    for text in PROBES:
        assert tok.encode(text) == lm.tokenizer.encode(text), text
    assert tok.chat_template == lm.tokenizer.chat_template


# ---- bad input: one clear error, nothing written -------------------------------------------------------


def _with_config(lm: LoadedModel, **changes) -> LoadedModel:
    cfg = dataclasses.replace(lm.config)
    for key, value in changes.items():  # past LlamaConfig's own checks, to reach the exporter's
        object.__setattr__(cfg, key, value)
    return dataclasses.replace(lm, config=cfg)


def _nan_lm(lm: LoadedModel) -> LoadedModel:
    bad = random_lm(lm.tokenizer)
    state = nnx.state(bad.model, nnx.Param)
    weight = state["model"]["norm"]["weight"]
    weight[...] = weight[...].at[3].set(jnp.nan)
    nnx.update(bad.model, state)
    return bad


def _huge_lm(lm: LoadedModel) -> LoadedModel:
    bad = random_lm(lm.tokenizer)
    state = nnx.state(bad.model, nnx.Param)
    kernel = state["model"]["layers"][1]["mlp"]["up_proj"]["kernel"]
    kernel[...] = kernel[...].at[0, 0].set(1e6)
    nnx.update(bad.model, state)
    return bad


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("q4", ConfigError, "GGUF export type 'Q4_K' is not supported; supported: F32, F16, BF16, Q8_0"),
        ("no-folder", ConfigError, "does not exist; create it first"),
        ("is-folder", ConfigError, "is a folder"),
        ("suffix", ConfigError, "must end in .gguf"),
        ("gemma", ConfigError, "model_type 'gemma3' is not supported; supported: llama, mistral, qwen2"),
        ("sliding", ConfigError, "sliding attention window (4096 tokens)"),
        ("o-bias", ConfigError, "output-projection biases"),
        ("mlp-bias", ConfigError, "MLP biases"),
        ("no-tokenizer", TokenizerError, "has no tokenizer"),
        ("small-vocab", TokenizerError, "ids up to 365 but the model embeds only 300 tokens"),
        ("pre", TokenizerError, "splits text like none of the GGUF pre-tokenizers"),
        ("nan", NonFiniteError, "model.norm.weight holds NaN or infinity"),
        ("f16-overflow", ConfigError, "beyond float16's 65504"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(tied, tmp_path, case, error, message):
    dest = tmp_path / "out.gguf"
    dest.write_bytes(b"GGUF previous export")  # a file a rerun may replace (one that is not GGUF is refused)
    (tmp_path / "folder.gguf").mkdir()
    kwargs = {}
    lm = tied
    if case == "q4":
        kwargs["dtype"] = "Q4_K"
    elif case == "no-folder":
        dest = tmp_path / "missing" / "out.gguf"
    elif case == "is-folder":
        dest = tmp_path / "folder.gguf"
    elif case == "suffix":
        dest = tmp_path / "out.bin"
    elif case == "gemma":
        lm = _with_config(tied, model_type="gemma3")
    elif case == "sliding":
        lm = _with_config(tied, model_type="mistral", sliding_window=4096)
    elif case == "o-bias":
        lm = _with_config(tied, o_bias=True)
    elif case == "mlp-bias":
        lm = _with_config(tied, mlp_bias=True)
    elif case == "no-tokenizer":
        lm = dataclasses.replace(tied, tokenizer=None)
    elif case == "small-vocab":
        lm = _with_config(tied, vocab_size=300)
    elif case == "pre":
        lm = tiny_lm(tmp_path / "m")
        lm.tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    elif case == "nan":
        lm = _nan_lm(tied)
    elif case == "f16-overflow":
        lm = _huge_lm(tied)
        kwargs["dtype"] = "F16"
    before = folder_listing(tmp_path)
    with pytest.raises(error) as info:
        export_gguf(lm, dest, **kwargs)
    assert isinstance(info.value, SafeGeneError)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert folder_listing(tmp_path) == before  # destination unchanged, no temporary file left behind


def test_weights_beyond_float16_export_as_f32_and_bf16(tied, tmp_path):
    lm = _huge_lm(tied)
    for dtype in ("F32", "BF16"):
        back = hf_state_dict(load_model(export_gguf(lm, tmp_path / f"{dtype}.gguf", dtype=dtype)).params)
        assert back["model.layers.1.mlp.up_proj.weight"][0, 0] == pytest.approx(1e6, rel=1e-2)


def test_a_failure_while_writing_leaves_the_previous_file(tied, tmp_path, monkeypatch):
    from safegene_jax.interop import gguf_export

    dest = export_gguf(tied, tmp_path / "m.gguf")
    before = folder_listing(tmp_path)
    calls = []

    def failing(w, qtype):
        calls.append(1)
        if len(calls) == 5:
            raise OSError("disk full")
        return gguf.quants.quantize(np.asarray(w, np.float32), qtype)

    monkeypatch.setattr(gguf_export, "encode_tensor", failing)
    with pytest.raises(OSError, match="disk full"):
        export_gguf(tied, dest, dtype="Q8_0")
    assert folder_listing(tmp_path) == before
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


# ---- Gemma 3 ---------------------------------------------------------------------------------------------------

GEMMA_TEXTS = (
    "hello world  ab\n\nhello!",  # longer than the window of 4: local and global layers differ
    "<start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\nworld",
    "a  b   c\n hello?! Zürich 🦙",  # runs of spaces, byte fallback, unknown characters
)
# max |logit difference| / max |logit| measured on the Gemma fixture (weights of std 0.3, so larger roundings than
# the Llama models'), the three GEMMA_TEXTS: F16 1.7e-3, BF16 1.8e-2, Q8_0 4.5e-2. Bounds leave a 3x margin; each
# weight is also checked to load exactly as its own rounding.
GEMMA_RELATIVE_TOLERANCE = {"F16": 6e-3, "BF16": 6e-2, "Q8_0": 0.15}


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    """The tiny Gemma 3 read from a GGUF file written as llama.cpp's converter writes one (norm weights that have
    been through ``1 + w`` once already), with Gemma's tokenizer rebuilt from its metadata."""
    path = tmp_path_factory.mktemp("gemma") / "gemma3.gguf"
    write_gemma3_gguf(path)
    return load_model(path)


@pytest.fixture(scope="module")
def gemma_f32(gemma, tmp_path_factory):
    return export_gguf(gemma, tmp_path_factory.mktemp("gemma-out") / "gemma.gguf")


def random_gemma(tok, *, seed=0, scale=0.05, **changes) -> LoadedModel:
    """A tiny Gemma 3 on the fixture's Gemma tokenizer with every weight, norms included, perturbed."""
    cfg = Gemma3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        sliding_window=4,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=(1, 6),
        pad_token_id=0,
    ).replace(**changes)
    model = Gemma3ForCausalLM(cfg, rngs=nnx.Rngs(seed))
    state = nnx.state(model, nnx.Param)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    nnx.update(
        model,
        jax.tree_util.tree_unflatten(
            treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
        ),
    )
    return LoadedModel(model, cfg, tok, f"random-gemma3-{seed}")


def test_gemma3_f32_round_trip_is_bit_for_bit(gemma, gemma_f32):
    back = load_model(gemma_f32)
    assert back.config == gemma.config  # the layer pattern, window, RoPE bases and scalar included
    for text in GEMMA_TEXTS:
        assert np.array_equal(logits(back, text), logits(gemma, text)), text
    for text in (*GEMMA_TEXTS, *PROBES):
        for add in (False, True):
            assert back.tokenizer.encode(text, add_special_tokens=add) == gemma.tokenizer.encode(
                text, add_special_tokens=add
            ), text
    assert back.tokenizer.decode(back.tokenizer.encode(GEMMA_TEXTS[2])) == gemma.tokenizer.decode(
        gemma.tokenizer.encode(GEMMA_TEXTS[2])
    )
    assert back.tokenizer.chat_template == gemma.tokenizer.chat_template == GEMMA_CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    assert back.tokenizer.apply_chat_template(messages, tokenize=False) == gemma.tokenizer.apply_chat_template(
        messages, tokenize=False
    )
    assert (back.tokenizer.bos_token, back.tokenizer.eos_token, back.tokenizer.pad_token, back.tokenizer.unk_token) == (
        "<bos>",
        "<eos>",
        "<pad>",
        "<unk>",
    )


def test_gemma3_file_layout_follows_llama_cpp(gemma, gemma_f32):
    reader = gguf.GGUFReader(gemma_f32)
    field = {k: f.contents() for k, f in reader.fields.items()}
    assert field["general.architecture"] == "gemma3"
    expected = {
        "context_length": 128,
        "embedding_length": 32,
        "block_count": 6,
        "feed_forward_length": 64,
        "attention.head_count": 4,
        "attention.head_count_kv": 2,
        "attention.key_length": 16,
        "attention.value_length": 16,
        "attention.sliding_window": 4,
        "rope.freq_base": 1e6,
        "vocab_size": 128,
    }
    assert {k: field[f"gemma3.{k}"] for k in expected} == expected
    assert field["gemma3.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6, rel=1e-6)
    names = {t.name for t in reader.tensors}
    norms = ("attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm", "attn_q_norm", "attn_k_norm")
    blocks = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down", *norms)
    want = {"token_embd.weight", "output_norm.weight"} | {f"blk.{i}.{b}.weight" for i in range(6) for b in blocks}
    assert names == want  # tied embeddings: no output.weight
    # every RMSNorm weight stored as 1 + w (llama.cpp's fold); Q/K rows not permuted
    hf = hf_state_dict(gemma.params)
    read = GGUFFile(gemma_f32).read
    for gguf_norm, hf_norm in zip(norms, GEMMA_NORMS):
        np.testing.assert_array_equal(read(f"blk.3.{gguf_norm}.weight"), hf[f"model.layers.3.{hf_norm}.weight"] + 1)
    np.testing.assert_array_equal(read("output_norm.weight"), hf["model.norm.weight"] + 1)
    for gguf_name, hf_name in (("attn_q", "q_proj"), ("attn_k", "k_proj")):
        np.testing.assert_array_equal(
            read(f"blk.0.{gguf_name}.weight"), hf[f"model.layers.0.self_attn.{hf_name}.weight"]
        )
    # Gemma's SentencePiece vocabulary as llama.cpp writes it
    assert (field["tokenizer.ggml.model"], field["tokenizer.ggml.pre"]) == ("llama", "default")
    assert field["tokenizer.ggml.add_space_prefix"] is False and field["tokenizer.ggml.add_bos_token"] is True
    tokens, types, scores = (field[f"tokenizer.ggml.{k}"] for k in ("tokens", "token_type", "scores"))
    source = {k: f.contents() for k, f in gguf.GGUFReader(gemma.source).fields.items()}
    assert tokens == source["tokenizer.ggml.tokens"] and types == source["tokenizer.ggml.token_type"]
    assert tokens[8] == "  " and types[8] == 4  # a run of spaces: real spaces, user-defined
    assert types[:7] == [3] * 7 and types[tokens.index("<0x21>")] == 6 and scores[tokens.index("<0x21>")] == 0.0
    normal = [s for s, t in zip(scores, types) if t == 1]
    assert normal == [-float(i) for i in range(len(normal))]  # falling in merge order
    assert {s for s, t in zip(scores, types) if t in (3, 4)} == {-1000.0}
    assert (field["tokenizer.ggml.eos_token_id"], field["tokenizer.ggml.eot_token_id"]) == (1, 6)


def test_gemma3_norm_fold_rounds_once_then_is_exact(gemma, tmp_path):
    """``1 + w`` in float32 rounds a norm weight to float32's step near 1 (at most 2**-24 off); nothing else
    changes, and exporting what was read gives the same file data again."""
    lm = random_gemma(gemma.tokenizer)
    first = export_gguf(lm, tmp_path / "first.gguf")
    back = load_model(first)
    want, got = hf_state_dict(lm.params), hf_state_dict(back.params)
    assert any(not np.array_equal(got[n], w) for n, w in want.items() if n.endswith("norm.weight"))  # it does round
    for name, w in want.items():
        if name.endswith("norm.weight"):
            np.testing.assert_array_equal(got[name], (w + np.float32(1)) - np.float32(1), err_msg=name)
            assert np.abs(got[name] - w).max() <= 2.0**-24
        else:
            np.testing.assert_array_equal(got[name], w, err_msg=name)
    assert relative_error(logits(back, GEMMA_TEXTS[0]), logits(lm, GEMMA_TEXTS[0])) <= 1e-5
    again = export_gguf(back, tmp_path / "again.gguf")
    one, two = gguf.GGUFReader(first), gguf.GGUFReader(again)
    assert [t.name for t in one.tensors] == [t.name for t in two.tensors]
    for a, b in zip(one.tensors, two.tensors):
        assert np.array_equal(np.asarray(a.data), np.asarray(b.data)), a.name


@pytest.mark.parametrize("dtype", ["F16", "BF16", "Q8_0"])
def test_gemma3_reduced_types_load_as_their_own_rounding(gemma, tmp_path, dtype):
    path = export_gguf(gemma, tmp_path / "m.gguf", dtype=dtype)
    types = tensor_types(path)
    assert {t for n, t in types.items() if n.endswith("norm.weight")} == {"F32"}
    assert {t for n, t in types.items() if not n.endswith("norm.weight")} == {dtype}  # rows of 32, 64 or 128
    back = load_model(path)
    qtype = gguf.GGMLQuantizationType[dtype]
    want, got = hf_state_dict(gemma.params), hf_state_dict(back.params)
    for name, w in want.items():
        expected = w if w.ndim == 1 else dequantize(quantize(w, qtype), qtype).reshape(w.shape)
        np.testing.assert_array_equal(got[name], expected.astype(np.float32), err_msg=name)
    for text in GEMMA_TEXTS:
        assert relative_error(logits(back, text), logits(gemma, text)) <= GEMMA_RELATIVE_TOLERANCE[dtype], text


@pytest.mark.parametrize(
    "changes",
    [{"tie_word_embeddings": False}, {"rope_scaling": (("factor", 2.0), ("rope_type", "linear"))}],
    ids=["untied", "rope-linear"],
)
def test_gemma3_variants_round_trip(gemma, tmp_path, changes):
    lm = random_gemma(gemma.tokenizer, seed=1, **changes)
    back = load_model(export_gguf(lm, tmp_path / "v.gguf"))
    assert back.config.replace(rms_norm_eps=1e-6) == lm.config  # the file stores epsilon as float32
    text = GEMMA_TEXTS[1]  # 15 tokens: past the window, so local and global RoPE both matter
    assert relative_error(logits(back, text), logits(lm, text)) <= 1e-5


def test_gemma3_names_are_the_inverse_of_the_readers():
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    names += [f"model.layers.4.{n}.weight" for n in GEMMA_NORMS]
    names += [f"model.layers.4.self_attn.{p}_proj.weight" for p in "qkvo"]
    names += [f"model.layers.4.mlp.{p}_proj.weight" for p in ("gate", "up", "down")]
    for name in names:
        assert gguf_to_hf_name(hf_to_gguf_name(name, "gemma3"), "gemma3") == name
    assert hf_to_gguf_name("model.layers.4.pre_feedforward_layernorm.weight", "gemma3") == "blk.4.ffn_norm.weight"
    assert (
        hf_to_gguf_name("model.layers.4.post_attention_layernorm.weight", "gemma3")
        == "blk.4.post_attention_norm.weight"
    )
    assert hf_to_gguf_name("model.layers.4.post_attention_layernorm.weight") == "blk.4.ffn_norm.weight"  # Llama's


def test_transformers_gguf_loader_agrees_on_gemma3(gemma, gemma_f32, monkeypatch):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gemma_f32.parent), gguf_file=gemma_f32.name, dtype=torch.float32
    )
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.config.layer_types == list(gemma.config.layer_types)
    for text in GEMMA_TEXTS:
        ids = gemma.tokenizer.encode(text)
        with torch.no_grad():
            theirs = model(torch.tensor([ids])).logits.numpy()
        assert np.abs(theirs - logits(gemma, text)).max() <= 1e-4, text
    tok = transformers.AutoTokenizer.from_pretrained(str(gemma_f32.parent), gguf_file=gemma_f32.name)
    for text in GEMMA_TEXTS:
        assert tok.encode(text) == gemma.tokenizer.encode(text), text
    assert tok.chat_template == gemma.tokenizer.chat_template


@pytest.mark.parametrize(
    "changes, error, message",
    [
        (
            {"layer_types": ("sliding_attention", "full_attention") * 3},
            ConfigError,
            "layer pattern sGsGsG (s: sliding, G: global) differs from Gemma 3's sssssG",
        ),
        ({"rope_local_theta": 5e4}, ConfigError, "local layers use RoPE base 50000"),
        ({"query_pre_attn_scalar": 24}, ConfigError, "query_pre_attn_scalar 24, which GGUF's 'gemma3' architecture"),
        ({"final_logit_softcapping": 30.0}, ConfigError, "soft-caps its logits at 30"),
        (
            {"rope_scaling": (("factor", 8.0), ("rope_type", "llama3"))},
            ConfigError,
            "uses 'llama3' rope scaling; GGUF's 'gemma3' architecture carries only linear",
        ),
        ({"qkv_bias": True}, ConfigError, "attention biases"),
        ({"mlp_bias": True}, ConfigError, "MLP biases"),
        ({"vocab_size": 366, "tokenizer": "llama"}, TokenizerError, "this one is BPE"),
    ],
    ids=["pattern", "local-rope", "scalar", "softcap", "rope-llama3", "attn-bias", "mlp-bias", "tokenizer"],
)
def test_gemma3_settings_gguf_cannot_state_are_refused(gemma, tied, tmp_path, changes, error, message):
    changes = dict(changes)
    lm = gemma
    if changes.pop("tokenizer", None):
        lm = dataclasses.replace(gemma, tokenizer=tied.tokenizer)
    lm = _with_config(lm, **changes)
    dest = tmp_path / "out.gguf"
    with pytest.raises(error) as info:
        export_gguf(lm, dest)
    assert isinstance(info.value, SafeGeneError)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
