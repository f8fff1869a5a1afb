"""The LLaVA projector: vision features -> LLM embeddings (XTuner v0's ``ProjectorModel``).

``Linear(vision -> llm)`` followed by ``depth - 1`` times ``[GELU, Linear(llm -> llm)]``, in an
``nn.Sequential`` named ``model``: the weight names (``model.0.weight``, ``model.2.weight``)
are v0's, so a v0 ``projector/`` folder or a v0 checkpoint's ``projector.*`` weights load.
The classes are registered with transformers' Auto classes under the model type
``projector`` when xtuner is imported, so ``AutoModel.from_pretrained(projector_dir)`` works
without running any code from the folder.
"""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.activations import ACT2FN

__all__ = ["ProjectorConfig", "ProjectorModel"]


class ProjectorConfig(PretrainedConfig):
    """Sizes of the projector (v0's field names)."""

    model_type = "projector"

    def __init__(self, visual_hidden_size=4096, llm_hidden_size=4096, depth=2,
                 hidden_act="gelu", bias=True, **kwargs):
        self.visual_hidden_size = visual_hidden_size
        self.llm_hidden_size = llm_hidden_size
        self.depth = depth
        self.hidden_act = hidden_act
        self.bias = bias
        super().__init__(**kwargs)


class ProjectorModel(PreTrainedModel):
    """The MLP that maps vision features to the LLM's embedding space."""

    config_class = ProjectorConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules: list[str] = []

    def __init__(self, config: ProjectorConfig):
        super().__init__(config)
        layers: list[nn.Module] = [nn.Linear(config.visual_hidden_size, config.llm_hidden_size,
                                             bias=config.bias)]
        for _ in range(1, config.depth):
            layers += [ACT2FN[config.hidden_act],
                       nn.Linear(config.llm_hidden_size, config.llm_hidden_size,
                                 bias=config.bias)]
        self.model = nn.Sequential(*layers)
        self.post_init()

    def _init_weights(self, module):
        # PyTorch's own Linear initialisation (as v0 had), not transformers' normal(0.02).
        if isinstance(module, nn.Linear):
            module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


AutoConfig.register("projector", ProjectorConfig, exist_ok=True)
AutoModel.register(ProjectorConfig, ProjectorModel, exist_ok=True)
