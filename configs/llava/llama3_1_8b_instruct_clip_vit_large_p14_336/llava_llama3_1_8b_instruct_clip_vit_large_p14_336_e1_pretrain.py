# LLaVA pre-training, Llama 3.1 8B Instruct + CLIP ViT-L/14-336 (projector only), 1 epoch:
#     xtuner train llava_llama3_1_8b_instruct_clip_vit_large_p14_336_e1_pretrain --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/vision/clip_vit_large_p14_336.py',
    '../../_base_/llava/pretrain.py',
]
