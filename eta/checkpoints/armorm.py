"""ArmoRM (RLHFlow/ArmoRM-Llama3-8B-v0.1) on transformers' ``LlamaModel``, without its hub code.

The reward of a conversation, as ArmoRM's model card and hub code define it:

* ``rewards`` = the regression layer (``num_objectives`` = 19 outputs, no bias) on the final hidden
  state of the conversation's last token (the ``<|eot_id|>`` closing the assistant turn);
* ``gates`` = the gating network on the final hidden state of the token that closes the last
  user turn, i.e. the first token of the last ``<|eot_id|><|start_header_id|>assistant
  <|end_header_id|>`` run of tokens: ``gating_n_hidden`` (3) linear layers of
  ``gating_hidden_dim`` (1024) units with ReLU, a linear layer to the objectives, a softmax of the
  logits divided by ``gating_temperature`` (10), times the learned scalar ``logit_scale``;
* score = sum over objectives of ``gates * (rewards @ reward_transform_matrix)`` (the transform
  matrix, an identity less a verbosity penalty, is a weight of the checkpoint).

The gate pattern is found through the tokenizer's own chat template (the end of a user turn and
the assistant generation prompt, encoded by the tokenizer), never as a list of token ids.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel, LlamaPreTrainedModel

from eta.checkpoints.weights import check_names, checkpoint_dir, read_config, read_tensors, weight_files

log = logging.getLogger(__name__)

# Defaults of the hub code for config fields a checkpoint may leave out.
HEAD_DEFAULTS = {"num_objectives": 19, "gating_temperature": 10.0, "gating_hidden_dim": 1024, "gating_n_hidden": 3}


class GatingNetwork(nn.Module):
    """MLP with ReLU, then softmax(logits / temperature) * logit_scale."""

    def __init__(self, in_features: int, objectives: int, hidden_dim: int, n_hidden: int, temperature: float):
        super().__init__()
        self.temperature = float(temperature)
        self.logit_scale = nn.Parameter(torch.ones(1))
        widths = [in_features] + [hidden_dim] * n_hidden
        self.layers = nn.ModuleList([nn.Linear(a, b) for a, b in zip(widths, widths[1:])]
                                    + [nn.Linear(widths[-1], objectives)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return torch.softmax(self.layers[-1](x) / self.temperature, dim=-1) * self.logit_scale[0]


class ArmoRM(LlamaPreTrainedModel):
    """Llama backbone, regression layer, gating network and reward transform, named as the checkpoint.

    A score head in the sense of ``eta.evaluators``: ``score_positions`` says which final hidden
    states of a token sequence it reads (last token, gate token), ``score_from_hidden`` turns them
    into the score.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        head = {key: getattr(config, key, default) for key, default in HEAD_DEFAULTS.items()}
        objectives = int(head["num_objectives"])
        self.model = LlamaModel(config)
        self.regression_layer = nn.Linear(config.hidden_size, objectives, bias=False)
        self.gating = GatingNetwork(config.hidden_size, objectives, int(head["gating_hidden_dim"]),
                                    int(head["gating_n_hidden"]), float(head["gating_temperature"]))
        self.reward_transform_matrix = nn.Parameter(torch.eye(objectives), requires_grad=False)
        self.gate_pattern: list[int] = []  # set from the tokenizer by ``load_armorm``
        self.post_init()

    def score_positions(self, ids: list[int]) -> list[int]:
        return [len(ids) - 1, gate_position(ids, self.gate_pattern)]

    def score_from_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, 2, H) hidden states at (last token, gate token) -> (B,) scores."""
        rewards = self.regression_layer(hidden[:, 0])
        gates = self.gating(hidden[:, 1])
        return (gates * (rewards @ self.reward_transform_matrix)).sum(dim=-1)


def gate_pattern(tokenizer) -> list[int]:
    """Token ids of "end of a user turn + assistant header", read off the tokenizer's chat template."""
    probe = "Is this the user turn?"
    user = [{"role": "user", "content": probe}]
    closed = tokenizer.apply_chat_template(user, tokenize=False)
    opened = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    if probe not in closed or not opened.startswith(closed) or opened == closed:
        raise ValueError("ArmoRM's gate needs a chat template with a user turn and an assistant "
                         "generation prompt; this tokenizer's template has neither")
    turn_end = closed[closed.rindex(probe) + len(probe):]
    # The header's trailing whitespace ("\n\n") is left out: a byte-level BPE may merge it with
    # the text that follows. With Llama-3's tokenizer the positions found are the hub code's.
    header = opened[len(closed):].rstrip()
    return list(tokenizer(turn_end + header, add_special_tokens=False)["input_ids"])


def gate_position(ids: list[int], pattern: list[int]) -> int:
    """Index of the first token of the last occurrence of ``pattern`` in ``ids``."""
    n = len(pattern)
    if n:
        for start in range(len(ids) - n, -1, -1):
            if ids[start: start + n] == pattern:
                return start
    raise ValueError(f"the assistant header tokens {pattern} are not in the scored sequence; ArmoRM's "
                     "gate reads the token that closes the last user turn")


def armorm_config(config: dict) -> LlamaConfig:
    return LlamaConfig.from_dict({k: v for k, v in config.items() if k not in ("auto_map", "architectures")})


def load_armorm(source: str, dtype: torch.dtype = torch.float32):
    """(ArmoRM, tokenizer) from a local directory or hub id; weights checked and read by name."""
    from transformers import AutoTokenizer

    directory = checkpoint_dir(source)
    config = armorm_config(read_config(directory))
    with torch.device("meta"):
        expected = set(ArmoRM(config).state_dict())
    files = weight_files(directory)
    check_names(set(files), expected, f"ArmoRM checkpoint {source}")
    log.info("loading ArmoRM %s natively (%d tensors, %s)", source, len(files), dtype)
    model = ArmoRM.from_pretrained(None, config=config, state_dict=dict(read_tensors(files, dtype)), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model.gate_pattern = gate_pattern(tokenizer)
    return model.eval(), tokenizer
