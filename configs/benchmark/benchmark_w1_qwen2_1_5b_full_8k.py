# Benchmark workload W1: full fine-tuning of a Qwen2-1.5B-shaped model on alpaca packed to 8192
# tokens, batch 1, bf16 autocast over float32 weights (XTuner v0's setup, with xtuner's fast
# defaults: varlen attention, liger kernels, fused AdamW, 'auto' activation checkpointing).
#     xtuner benchmark benchmark_w1_qwen2_1_5b_full_8k --random-init --baseline
#     xtuner benchmark benchmark_w1_qwen2_1_5b_full_8k --random-init --memory-budget 34GB
#     NPROC_PER_NODE=2 xtuner benchmark benchmark_w1_qwen2_1_5b_full_8k --random-init \
#         --deepspeed deepspeed_zero2
# `--random-init` needs only the model's config.json (from the hub, or a local folder given
# with --cfg-options model.llm.pretrained_model_name_or_path=DIR). It trains like any config.
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
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset import process_hf_dataset
from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.map_fns import alpaca_map_fn, template_map_fn_factory
from xtuner.engine.hooks import ThroughputHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import SupervisedFinetune
from xtuner.utils import PROMPT_TEMPLATE

pretrained_model_name_or_path = 'Qwen/Qwen2-1.5B'
data_path = 'tatsu-lab/alpaca'
max_length = 8192
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
    # No dtype: float32 weights, which bf16 autocast computes with (as in v0).
    llm=dict(type=AutoModelForCausalLM.from_pretrained,
             pretrained_model_name_or_path=pretrained_model_name_or_path))
train_dataset = dict(
    type=process_hf_dataset,
    dataset=dict(type=load_dataset, path=data_path),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=alpaca_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=PROMPT_TEMPLATE.qwen_chat),
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
    optimizer=dict(type=AdamW, lr=2e-5, betas=(0.9, 0.999), weight_decay=0),
    clip_grad=dict(max_norm=1, error_if_nonfinite=False),
    accumulative_counts=1,
    loss_scale='dynamic',
    dtype='bfloat16')
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
