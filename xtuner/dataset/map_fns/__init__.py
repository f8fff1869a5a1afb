"""Map functions of the data pipeline: source format → ``conversation`` → prompt template."""
from .dataset_map_fns import *  # noqa: F403
from .dataset_map_fns import __all__ as _dataset_map_fns_all
from .template_map_fn import template_map_fn, template_map_fn_factory

__all__ = [*_dataset_map_fns_all, "template_map_fn", "template_map_fn_factory"]
