"""``xtuner convert pth_to_hf`` for reward models (full and LoRA: written whole, loaded by
plain ``AutoModelForSequenceClassification``, parity checked on the pooled last-token score;
QLoRA refused with one line) and for the DPO demo's policy; ``build_model`` turns liger off for
every ``SupervisedFinetune`` subclass.

Checkpoints are made as ``tests/tools/test_convert.py`` makes them: the config's model is
built, its trainable weights perturbed, and an mmengine-style checkpoint saved.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xtuner.entry_point import main as xtuner

REWARD_TOKEN = 5

CONFIG = """\
import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from xtuner.demo import TINY_LLM_PATH
from xtuner.model.reward import RewardModel

reward_token_id = {token}
tokenizer = dict(type=AutoTokenizer.from_pretrained, pretrained_model_name_or_path=TINY_LLM_PATH)
model = dict(
    type=RewardModel,
    reward_token_id=reward_token_id,
    use_activation_checkpointing=False,
    tokenizer=tokenizer,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=TINY_LLM_PATH, dtype='float32'{quant}),
    lora={lora})
"""
LORA = "dict(type=LoraConfig, r=4, lora_alpha=8, lora_dropout=0.0, task_type='CAUSAL_LM')"
QUANT = (",\n             quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True, "
         "bnb_4bit_compute_dtype=torch.float32, bnb_4bit_quant_type='nf4')")


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models; extra threads only slow a busy CI machine down
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.delenv("XTUNER_DEBUG", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _config(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"reward_{kind}.py"
    path.write_text(CONFIG.format(token=REWARD_TOKEN, lora=LORA if kind != "full" else None,
                                  quant=QUANT if kind == "qlora" else ""))
    return str(path)


def _train_like(config: str, path: Path, seed: int = 0):
    """Build ``config``'s model, perturb its trainable weights (the zero-initialised score
    head too), save an mmengine checkpoint."""
    from xtuner.engine.config import load_config
    from xtuner.model.export import build_model
    from xtuner.utils.paths import resolve_config

    torch.manual_seed(seed)
    model = build_model(load_config(resolve_config(config)))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.2)
    torch.save({"meta": {"iter": 2, "seed": seed}, "state_dict": model.state_dict(),
                "message_hub": {"runtime_info": {"iter": 2}}}, path)
    return model


IDS = [[1, 40, 41, 42, 43, REWARD_TOKEN], [1, 90, 91, REWARD_TOKEN]]


@pytest.mark.parametrize("kind", ["full", "lora"])
def test_reward_model_exports_whole_and_scores_the_same(kind, tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification

    config = _config(tmp_path, kind)
    model = _train_like(config, tmp_path / "iter_2.pth").eval()
    assert model.use_lora == (kind == "lora")
    with torch.no_grad():  # the trained model's score at each sequence's reward token
        expected = [model.token_scores({"input_ids": torch.tensor([ids])})[0, -1]
                    for ids in IDS]
    out = tmp_path / "hf"
    code = xtuner(["convert", "pth_to_hf", config, str(tmp_path / "iter_2.pth"), str(out),
                   "--dtype", "fp32"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "Parity check passed: max |logits difference|" in stdout
    assert "Saved the reward model (AutoModelForSequenceClassification) (fp32)" in stdout
    assert not (out / "adapter_config.json").exists()  # LoRA merged, not an adapter

    written = AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32)
    assert written.config.reward_token_id == REWARD_TOKEN
    with torch.no_grad():
        got = [written(input_ids=torch.tensor([ids])).logits[0, 0] for ids in IDS]
    torch.testing.assert_close(torch.stack(got), torch.stack(expected), atol=1e-4, rtol=0)
    assert any(abs(float(s)) > 0.05 for s in expected)  # the head is not the zero init


def test_reward_model_fp16_parity_and_tampered_weights_fail(tmp_path, capsys, monkeypatch):
    """fp16 export passes its check (the source rounded first); weights changed on the way
    to disk fail it with one line, and nothing is written."""
    config = _config(tmp_path, "lora")
    _train_like(config, tmp_path / "iter_2.pth")
    assert xtuner(["convert", "pth_to_hf", config, str(tmp_path / "iter_2.pth"),
                   str(tmp_path / "fp16")]) == 0
    assert "Parity check passed" in capsys.readouterr().out

    from xtuner.model.reward import RewardModel

    to_hf = RewardModel.to_hf

    def tampered(self, *args, **kwargs):
        with torch.no_grad():
            self._classifier().score.weight.add_(0.5)
        return to_hf(self, *args, **kwargs)

    monkeypatch.setattr(RewardModel, "to_hf", tampered)
    code = xtuner(["convert", "pth_to_hf", config, str(tmp_path / "iter_2.pth"),
                   str(tmp_path / "bad")])
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after transformers' progress bars
    assert code == 2
    assert last.startswith("xtuner convert pth_to_hf: error: parity check failed: the written "
                           "reward model gives logits that differ from the source by up to ")
    assert not (tmp_path / "bad").exists()


def test_qlora_reward_model_is_refused_with_one_line(tmp_path, capsys):
    pytest.importorskip("bitsandbytes")
    config = _config(tmp_path, "qlora")
    _train_like(config, tmp_path / "iter_2.pth")
    code = xtuner(["convert", "pth_to_hf", config, str(tmp_path / "iter_2.pth"),
                   str(tmp_path / "hf")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert last == ("xtuner convert pth_to_hf: error: exporting a QLoRA reward model is not "
                    "supported: merging into 4-bit weights changes the scores; train with LoRA on "
                    "a 16-bit model to export a reward model")
    assert not (tmp_path / "hf").exists()


def test_dpo_demo_policy_converts_like_sft(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    model = _train_like("demo_tiny_dpo_colorist_e6", tmp_path / "iter_2.pth")
    with torch.no_grad():
        expected = model.llm(input_ids=torch.tensor(IDS[:1])).logits
    code = xtuner(["convert", "pth_to_hf", "demo_tiny_dpo_colorist_e6",
                   str(tmp_path / "iter_2.pth"), str(tmp_path / "hf"), "--fp32"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    assert "Parity check passed" in stdout
    written = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32)
    with torch.no_grad():
        got = written(input_ids=torch.tensor(IDS[:1])).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_build_model_turns_liger_off_for_subclasses(tmp_path):
    """A DPO or reward config asking for liger still builds for export (plain modules)."""
    from xtuner.engine.config import load_config
    from xtuner.model.export import build_model
    from xtuner.utils.paths import resolve_config

    for config in ("demo_tiny_dpo_colorist_e6", _config(tmp_path, "full")):
        cfg = load_config(resolve_config(config))
        cfg.model.use_liger_kernel = True
        cfg.model.use_activation_checkpointing = True
        model = build_model(cfg)
        assert model.use_liger_kernel is False
        assert not model.llm.is_gradient_checkpointing
