# Offline LLaVA demo: a tiny random-init CLIP vision tower, the projector and the tiny demo
# Llama learn together to say what a 32x32 picture shows ("A red circle."), on a CPU in a few
# minutes, no downloads:
#     xtuner train demo_tiny_llava_shapes_e12
# The pictures, their LLaVA-format conversations and the tower are made by
# `python -m xtuner.demo.build_llava_demo`. With real models this is LLaVA's fine-tune stage:
# freeze the tower, start from a pre-trained projector (`pretrained_pth`), see the LLaVA
# section of the README.
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
from transformers import AutoModelForCausalLM, AutoTokenizer, CLIPImageProcessor, CLIPVisionModel

from xtuner.dataset.collate_fns import default_collate_fn
from xtuner.dataset.llava import LLaVADataset
from xtuner.dataset.map_fns import llava_map_fn, template_map_fn_factory
from xtuner.demo import SHAPES_DATA_PATH, SHAPES_DIR, TINY_CLIP_PATH, TINY_LLM_PATH
from xtuner.engine.hooks import DatasetInfoHook, ThroughputHook
from xtuner.engine.runner import TrainLoop
from xtuner.model import LLaVAModel
from xtuner.utils import PROMPT_TEMPLATE

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = TINY_LLM_PATH
visual_encoder_name_or_path = TINY_CLIP_PATH
use_varlen_attn = True

# Data
data_path = SHAPES_DATA_PATH
image_folder = SHAPES_DIR
prompt_template = PROMPT_TEMPLATE.vicuna
max_length = 256
image_tokens = 16  # (32 / 8) ** 2 patches of the tiny CLIP, class token dropped
pack_to_max_length = True

# Scheduler & Optimizer
batch_size = 1  # packed rows per device
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 12
optim_type = AdamW
lr = 2e-3
betas = (0.9, 0.98)
weight_decay = 0.0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 200
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
tokenizer = dict(
    type=AutoTokenizer.from_pretrained,
    pretrained_model_name_or_path=llm_name_or_path,
    padding_side='right')

image_processor = dict(
    type=CLIPImageProcessor.from_pretrained,
    pretrained_model_name_or_path=visual_encoder_name_or_path)

model = dict(
    type=LLaVAModel,
    freeze_llm=False,  # both are random-init here: everything trains
    freeze_visual_encoder=False,
    use_varlen_attn=use_varlen_attn,
    use_activation_checkpointing=False,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        dtype='float32'),
    visual_encoder=dict(
        type=CLIPVisionModel.from_pretrained,
        pretrained_model_name_or_path=visual_encoder_name_or_path))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=LLaVADataset,
    data_path=data_path,
    image_folder=image_folder,
    tokenizer=tokenizer,
    image_processor=image_processor,
    dataset_map_fn=llava_map_fn,
    template_map_fn=dict(type=template_map_fn_factory, template=prompt_template),
    max_length=max_length,
    pad_image_to_square=False,
    pack_to_max_length=pack_to_max_length,
    image_tokens=image_tokens)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=default_collate_fn, use_varlen_attn=use_varlen_attn))

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
custom_hooks = [
    dict(type=DatasetInfoHook, tokenizer=tokenizer),
    dict(type=ThroughputHook),
]

default_hooks = dict(
    timer=dict(type=IterTimerHook),
    logger=dict(type=LoggerHook, log_metric_by_epoch=False, interval=10),
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
