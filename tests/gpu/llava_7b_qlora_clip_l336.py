# LLaVA fine-tune stage at real shapes for `xtuner benchmark --random-init` on one GPU:
# a Vicuna-7B-shaped LLM in 4-bit with LoRA r=512 (v0's finetune recipe), a CLIP-L/336 tower
# with LoRA r=64, the two-layer projector, packed rows of 2048 tokens with varlen attention
# (each 336x336 image is 576 of them). The model folders need only their config.json:
#     python3 -c "from transformers import LlamaConfig, CLIPVisionConfig; ..."  (see
#     tests/gpu/run_benchmarks.sh llava)
import torch
from mmengine.optim import AmpOptimWrapper
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, CLIPVisionModel

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.engine.runner import TrainLoop
from xtuner.model import LLaVAModel

llm_name_or_path = '/tmp/wl/vicuna_7b_config'
visual_encoder_name_or_path = '/tmp/wl/clip_l336_config'
max_length = 2048
use_varlen_attn = True

model = dict(
    type=LLaVAModel,
    freeze_llm=True,
    freeze_visual_encoder=True,
    use_varlen_attn=use_varlen_attn,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        dtype=torch.bfloat16,
        quantization_config=dict(
            type=BitsAndBytesConfig, load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True, bnb_4bit_quant_type='nf4')),
    llm_lora=dict(type=LoraConfig, r=512, lora_alpha=256, lora_dropout=0.05, bias='none',
                  task_type='CAUSAL_LM'),
    visual_encoder=dict(
        type=CLIPVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path,
        dtype=torch.bfloat16),
    visual_encoder_lora=dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.05,
                             bias='none'))

train_dataloader = dict(
    batch_size=1, num_workers=0, dataset=None,
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn))

optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=AdamW, lr=2e-4, betas=(0.9, 0.999), weight_decay=0),
    clip_grad=dict(max_norm=1, error_if_nonfinite=False),
    accumulative_counts=1, loss_scale='dynamic', dtype='bfloat16')

train_cfg = dict(type=TrainLoop, max_iters=20)
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
