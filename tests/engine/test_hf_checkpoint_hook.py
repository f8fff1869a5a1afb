"""``HFCheckpointHook`` writes a model that plain transformers / peft load at the end of a run."""
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from xtuner.entry_point import main


@pytest.mark.parametrize("method", ["full", "lora"])
def test_hf_model_written_after_training(tmp_path, method):
    name = f"demo_tiny_{method}_colorist_e40"
    assert main(["copy-cfg", name, str(tmp_path)]) == 0
    config = tmp_path / f"{name}_copy.py"
    with open(config, "a", encoding="utf-8") as f:
        f.write("\ncustom_hooks = [dict(type='xtuner.engine.hooks.HFCheckpointHook')]\n")
    work = tmp_path / "work"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "xtuner", "train", str(config), "--work-dir", str(work),
         "--cfg-options", "train_cfg.max_epochs=0.1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = work / "hf_model"
    ckpt = torch.load(next(work.glob("iter_*.pth")), weights_only=True)["state_dict"]
    if method == "full":
        model = AutoModelForCausalLM.from_pretrained(out)
        assert (out / "tokenizer.json").is_file()
        trained = ckpt["llm.model.embed_tokens.weight"]
        torch.testing.assert_close(model.model.embed_tokens.weight, trained)
    else:
        from peft import PeftModel

        from xtuner.demo import TINY_LLM_PATH

        assert (out / "adapter_config.json").is_file()
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(TINY_LLM_PATH),
                                          out)
        lora_key = next(k for k in ckpt if "lora_A" in k)
        loaded = dict(model.named_parameters())[lora_key[len("llm."):]]
        torch.testing.assert_close(loaded, ckpt[lora_key])


def test_interval_exports_every_n_optimizer_steps_and_keeps_the_newest(tmp_path):
    """interval counts optimizer steps (3 micro-batches each here, the last step shorter),
    max_keep removes the oldest hf-STEP folders; a model's own save_hf writes them."""
    from types import SimpleNamespace

    from xtuner.engine.hooks import HFCheckpointHook

    written = []

    class Model:
        def save_hf(self, out_dir):
            os.makedirs(out_dir)
            written.append(os.path.basename(out_dir))

    runner = SimpleNamespace(model=Model(), work_dir=str(tmp_path), max_iters=20,
                             optim_wrapper=SimpleNamespace(_accumulative_counts=3),
                             logger=SimpleNamespace(info=lambda msg: None))
    hook = HFCheckpointHook(interval=2, max_keep=2)
    for it in range(20):  # 7 optimizer steps: 6 of 3 micro-batches, the last of 2
        runner.iter = it
        hook.after_train_iter(runner, it)
    assert written == ["hf-2", "hf-4", "hf-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-4", "hf-6"]
    hook.after_run(runner)
    assert written[-1] == "hf_model"
