"""Modules shared by the multimodal models (v0 import path: ``xtuner.model.modules``)."""
from .projector import ProjectorConfig, ProjectorModel

__all__ = ["ProjectorConfig", "ProjectorModel"]
