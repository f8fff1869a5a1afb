# Benchmark workload W2: QLoRA (NF4 double quantization, fp16 compute, r=64 alpha=16 on every
# linear layer; XTuner v0's QLoRA defaults) of a Llama-3-8B-shaped model on alpaca packed to
# 2048 tokens, batch 1, with xtuner's fast defaults (varlen attention, liger kernels, fused
# AdamW, 'auto' activation checkpointing).
#     xtuner benchmark benchmark_w2_llama3_8b_qlora_2k --random-init --baseline
#     xtuner benchmark benchmark_w2_llama3_8b_qlora_2k --random-init --memory-budget 10GB
# `--random-init` needs only the model's config.json (from the hub, or a local folder given
# with --cfg-options model.llm.pretrained_model_name_or_path=DIR). It trains like any config.
import torch
from datasets import load_dataset
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (
    CheckpointHook,
    DistSamplerSeedHook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
)
from mmengine.optim import AmpOptimWrapper, ConstantLR
from peft import LoraConfig
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory
from xtuner.engine.hooks import ThroughputHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

pretrained_model_name_or_path = 'meta-llama/Meta-Llama-3-8B'
data_path = 'tatsu-lab/alpaca'
max_length = 2048
use_varlen_attn = True  # packed samples never attend to each other

tokenizer = dict(type=AutoTokenizer.from_pretrained,
                 pretrained_model_name_or_path=pretrained_model_name_or_path,
                 padding_side='right')
model = dict(
    type=SupervisedFinetune,
    use_varlen_attn=use_varlen_attn,
    # Checkpoint only the layers that must be to stay under the budget (default: 90% of the
    # GPU); `--memory-budget` of xtuner benchmark sets it too.
    use_activation_checkpointing='auto',
    activation_memory_budget=None,
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path,
             dtype=torch.float16,
             quantization_config=dict(type=BitsAndBytesConfig, load_in_4bit=True,
                                      load_in_8bit=False, llm_int8_threshold=6.0,
                                      llm_int8_has_fp16_weight=False,
                                      bnb_4bit_compute_dtype=torch.float16,
                                      bnb_4bit_use_double_quant=True,
                                      bnb_4bit_quant_type='nf4')),
    lora=dict(type=LoraConfig, r=64, lora_alpha=16, lora_dropout=0.1, bias='none',
              task_type='CAUSAL_LM'))
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path=data_path),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=alpaca_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.llama3_chat),
    remove_unused_columns=True,
    shuffle_before_pack=True,
    pack_to_max_length=True,
    use_varlen_attn=use_varlen_attn)
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn))
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=AdamW, lr=2e-4, betas=(0.9, 0.999), weight_decay=0),
    clip_grad=dict(max_norm=1, error_if_nonfinite=False),
    accumulative_counts=1,
    loss_scale='dynamic',
    dtype='float16')
param_scheduler = [dict(type=ConstantLR, factor=1.0, by_epoch=False, begin=0, end=10**6)]
train_cfg = dict(type=TrainLoop, max_iters=1000)
custom_hooks = [dict(type=ThroughputHook)]
default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=500, max_keep_ckpts=2),
    sampler_seed=dict(type=DistSamplerSeedHook))
env_cfg = dict(cudnn_benchmark=False,
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
