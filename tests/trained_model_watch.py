"""Whether ``xtuner convert pth_to_hf`` still holds the trained model when it loads the
written one for its parity check (two models at once would double what a conversion needs)."""
from __future__ import annotations

import gc
import weakref


def watch_trained_model_at_load(monkeypatch, auto_class) -> list[bool]:
    """Patch ``xtuner.model.export.build_model`` and ``auto_class.from_pretrained``; the
    returned list gets, for each model loaded after the trained one was built, whether the
    trained model was still alive (after a garbage collection)."""
    import xtuner.model.export as export

    build_model, load = export.build_model, auto_class.from_pretrained
    built, alive_at_load = [], []

    def recording_build_model(cfg):
        model = build_model(cfg)
        built.append(weakref.ref(model))
        return model

    def checking_load(*args, **kwargs):
        if built:  # the written model, not one that build_model loads
            gc.collect()
            alive_at_load.append(built[0]() is not None)
        return load(*args, **kwargs)

    monkeypatch.setattr(export, "build_model", recording_build_model)
    monkeypatch.setattr(auto_class, "from_pretrained", staticmethod(checking_load))
    return alive_at_load
