"""Checkpoints whose hub repositories ship their own model code, loaded on transformers' own classes.

Remote code written for an older transformers is the commonest way a reproduction dies on a new
install, so the paper's two such checkpoints are read here by weight name instead:

* ``armorm``: ArmoRM's gated multi-objective reward head on transformers' ``LlamaModel``;
* ``internlm2``: InternLM2 weights (MD-Judge-v0.2's, XComposer-2.5's language model) mapped onto
  ``LlamaForCausalLM``;
* ``internvl_chat``: InternVL-Chat-1.0, trained with the LLaVA codebase and shipping no loadable code
  at all, converted once onto ``LlavaForConditionalGeneration`` with InternViT as vision tower;
* ``weights``: reading a checkpoint's config and safetensors files by name, with exact name checks.

``layout`` tells which of them a checkpoint is. A params file's ``trust_remote_code: true`` runs
the repository's own code instead (for users on the transformers release it was written for).
"""

from eta.checkpoints.weights import WeightNameError, layout

__all__ = ["WeightNameError", "layout"]
