# Offline time-series demo (the "any Hugging Face encoder + LLM" recipe): a small random-init
# Wav2Vec2 encoder, a projector and the tiny demo Llama learn together to say what a signal
# is ("A 5 Hz sine wave.", "A 3 Hz square wave.", "White noise."), on a CPU in a few
# minutes, no downloads:
#     xtuner train demo_tiny_ts_signals_e16
# The signals (.wav/.npy/.csv at 100 Hz) and their chat records are made by
# `python -m xtuner.demo.build_ts_demo`. Wav2Vec2 is used because it is a transformers encoder
# that takes a raw float sequence (`input_values`) of any length, and its strided
# convolutions fix how many features a signal gives (here one per 20 samples), which the data
# side computes from the same config. With a real encoder and LLM: load both with
# from_pretrained, keep freeze_llm=True (or add llm_lora) and freeze_encoder=True.
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
from transformers import AutoModelForCausalLM, AutoTokenizer, Wav2Vec2Config, Wav2Vec2Model

from xtuner.dataset.media import (
                                  TS_TOKENS,
                                  MediaJsonlDataset,
                                  TimeSeriesTokenizeFunction,
                                  add_special_tokens,
                                  media_collate_fn,
)
from xtuner.demo import TINY_LLM_PATH, TS_SIGNALS_DATA_PATH, TS_SIGNALS_DIR
from xtuner.engine.hooks import DatasetInfoHook, ThroughputHook
from xtuner.engine.runner import TrainLoop
from xtuner.model.encoder_llm import EncoderLLM

#######################################################################
#                          PART 1  Settings                           #
#######################################################################
# Model
llm_name_or_path = TINY_LLM_PATH
# A 2-layer Wav2Vec2 over the raw signal: convolutions of kernel 10/8 and stride 5/4, so one
# feature per 20 samples (0.2 s at 100 Hz); random init, trained with the rest.
encoder_config = dict(
    type=Wav2Vec2Config,
    hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
    conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 8),
    num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=4,
    feat_extract_norm='layer', do_stable_layer_norm=True,
    apply_spec_augment=False, mask_time_prob=0.0, layerdrop=0.0)
use_varlen_attn = True

# Data
data_path = TS_SIGNALS_DATA_PATH
media_root = TS_SIGNALS_DIR
max_length = 256
pack_to_max_length = True

# Scheduler & Optimizer
batch_size = 1  # packed rows per device
accumulative_counts = 1
dataloader_num_workers = 0
max_epochs = 16
optim_type = AdamW
lr = 2e-3
betas = (0.9, 0.98)
weight_decay = 0.0
max_norm = 1  # grad clip
warmup_ratio = 0.03

# Save
save_steps = 500
save_total_limit = 2  # Maximum checkpoints to keep (-1 means unlimited)

#######################################################################
#                      PART 2  Model & Tokenizer                      #
#######################################################################
# The same three special tokens (<|ts|>, <TS_CONTEXT>, <|/ts|>) for the data and the model.
tokenizer = dict(
    type=add_special_tokens,
    tokenizer=dict(type=AutoTokenizer.from_pretrained,
                   pretrained_model_name_or_path=llm_name_or_path,
                   padding_side='right'),
    tokens=TS_TOKENS)

model = dict(
    type=EncoderLLM,
    freeze_llm=False,  # both are random-init here: everything trains
    freeze_encoder=False,
    use_varlen_attn=use_varlen_attn,
    use_activation_checkpointing=False,
    tokenizer=tokenizer,
    context_token='<TS_CONTEXT>',
    projector_depth=2,
    llm=dict(
        type=AutoModelForCausalLM.from_pretrained,
        pretrained_model_name_or_path=llm_name_or_path,
        dtype='float32'),
    encoder=dict(type=Wav2Vec2Model, config=encoder_config))

#######################################################################
#                      PART 3  Dataset & Dataloader                   #
#######################################################################
train_dataset = dict(
    type=MediaJsonlDataset,
    data_path=data_path,
    tokenize_fn=dict(
        type=TimeSeriesTokenizeFunction,
        tokenizer=tokenizer,
        encoder_config=encoder_config,
        media_root=media_root,
        max_length=max_length),
    pack_to_max_length=pack_to_max_length)

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=dataloader_num_workers,
    dataset=train_dataset,
    sampler=dict(type=DefaultSampler, shuffle=True),
    collate_fn=dict(type=media_collate_fn, use_varlen_attn=use_varlen_attn))

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
