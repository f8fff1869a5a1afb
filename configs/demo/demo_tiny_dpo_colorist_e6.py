# Offline preference demo: DPO (full fine-tuning, packed pairs) of the tiny random-init demo
# Llama on colour requests whose chosen answer is the right hex code and whose rejected answer
# is another colour's code. Runs on a laptop CPU in about a minute and a half, no downloads:
#     xtuner train demo_tiny_dpo_colorist_e6
# The logged reward_acc (how often the chosen answer gains more than the rejected one over
# the frozen reference) starts at 0 (all rewards are 0 at step 0, where the loss is log 2)
# and climbs well above chance. The data is built by `python -m xtuner.demo.build_preference_demo`.
from mmengine.dataset import DefaultSampler
from mmengine.hooks import (
                            CheckpointHook,
                            DistSamplerSeedHook,
                            IterTimerHook,
                            LoggerHook,
                            ParamSchedulerHook,
)
from mmengine.optim import AmpOptimWrapper, CosineAnnealingLR, LinearLR
from torch.optim import AdamW
from transformers import AutoModelForCausalLM, AutoTokenizer

from xtuner.dataset.collate_fns.preference_collate_fn import preference_collate_fn
from xtuner.dataset.preference_dataset import build_preference_dataset, load_jsonl_dataset
from xtuner.demo import TINY_LLM_PATH
from xtuner.demo.build_preference_demo import COLORIST_PREFERENCE_PATH
from xtuner.engine.runner import TrainLoop
from xtuner.model.dpo import DPO

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
pretrained_model_name_or_path = TINY_LLM_PATH
use_varlen_attn = True
dpo_loss_type = 'sigmoid'  # One of ['sigmoid', 'hinge', 'ipo', 'kto_pair', 'sppo_hard', 'nca_pair', 'robust']  # noqa: E501
loss_beta = 0.1
label_smoothing = 0.0

# Data
data_path = COLORIST_PREFERENCE_PATH
max_length = 64
max_packed_length = 512

# Scheduler & Optimizer
batch_size = 1  # per_device (one packed row of pairs)
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 6
optim_type = AdamW
lr = 1e-3
betas = (0.9, 0.98)
weight_decay = 0.0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 100
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=pretrained_model_name_or_path,
    padding_side='right')

model = dict(
    type=DPO,
    use_varlen_attn=use_varlen_attn,
    loss_type=dpo_loss_type,
    beta=loss_beta,
    label_smoothing=label_smoothing,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=pretrained_model_name_or_path,
        dtype='float32'))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=build_preference_dataset,
    dataset=dict(type=load_jsonl_dataset, data_files=[data_path]),
    tokenizer=tokenizer,
    max_length=max_length,
    dataset_map_fn=None,
    is_dpo=True,
    is_reward=False,
    reward_token_id=-1,
    num_proc=1,
    use_varlen_attn=use_varlen_attn,
    max_packed_length=max_packed_length,
    shuffle_before_pack=True)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=preference_collate_fn, use_varlen_attn=use_varlen_attn))

#######################################################################
#                    PART 4  Scheduler & Optimizer                    #
#######################################################################
optim_wrapper = dict(
    type=AmpOptimWrapper,
    optimizer=dict(type=optim_type, lr=lr, betas=betas, weight_decay=weight_decay),
    clip_grad=dict(max_norm=max_norm, error_if_nonfinite=False),
    accumulative_counts=accumulative_counts,
    loss_scale='dynamic',
    dtype='bfloat16')

param_scheduler = [
    dict(type=LinearLR, start_factor=1e-2, by_epoch=True, begin=0,
         end=warmup_ratio * max_epochs, convert_to_iter_based=True),
    dict(type=CosineAnnealingLR, eta_min=lr * 0.05, by_epoch=True,
         begin=warmup_ratio * max_epochs, end=max_epochs, convert_to_iter_based=True),
]

train_cfg = dict(type=TrainLoop, max_epochs=max_epochs)

#######################################################################
#                           PART 5  Runtime                           #
#######################################################################
custom_hooks = []

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=5),
    param_scheduler=dict(type=ParamSchedulerHook),
    checkpoint=dict(type=CheckpointHook, by_epoch=False, interval=save_steps,
                    max_keep_ckpts=save_total_limit),
    sampler_seed=dict(type=DistSamplerSeedHook),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)

visualizer = None
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
log_processor = dict(by_epoch=False)
