# LLaVA pre-training, Qwen2.5 7B Instruct + CLIP ViT-L/14-336 (projector only), 1 epoch:
#     xtuner train llava_qwen2_5_7b_instruct_clip_vit_large_p14_336_e1_pretrain --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/vision/clip_vit_large_p14_336.py',
    '../../_base_/llava/pretrain.py',
]
