"""Interchange: the formats serving and sharing tools load.

PEFT LoRA adapters (vLLM multi-LoRA, llama.cpp's LoRA conversion), GGUF files (llama.cpp, Ollama), model
cards, Hugging Face Hub upload and mergekit recipes. This layer sits above the models and the method: it
reads a :class:`~safegene_jax.method.SafetyAdapter` or a loaded model and writes files other tools read.

Example::

    from safegene_jax.interop import export_gguf, export_peft, push_to_hub

    report = export_peft(adapter, "out/peft", coeffs=recal.coeffs, rank=16, base_model="me/task-model")
    print(report.total_energy, report.dropped_values)
    export_gguf(load_model("out/safe"), "out/safe-q8_0.gguf", dtype="Q8_0")
    push_to_hub("out/peft", "me/task-model-safety-lora")
"""

from safegene_jax.interop.gguf_export import SUPPORTED_GGUF_TYPES, export_gguf
from safegene_jax.interop.hub import push_to_hub
from safegene_jax.interop.hub_card import (
    CARD_FILE,
    declared_license,
    folder_card,
    model_card,
    write_card,
    write_model_card,
)
from safegene_jax.interop.mergekit_yaml import RECIPE_FILE, mergekit_recipe, write_mergekit_recipe
from safegene_jax.interop.peft_lora import PeftExportReport, VectorDelta, export_peft

__all__ = [
    "CARD_FILE",
    "RECIPE_FILE",
    "SUPPORTED_GGUF_TYPES",
    "PeftExportReport",
    "VectorDelta",
    "declared_license",
    "export_gguf",
    "export_peft",
    "folder_card",
    "mergekit_recipe",
    "model_card",
    "push_to_hub",
    "write_card",
    "write_mergekit_recipe",
    "write_model_card",
]
