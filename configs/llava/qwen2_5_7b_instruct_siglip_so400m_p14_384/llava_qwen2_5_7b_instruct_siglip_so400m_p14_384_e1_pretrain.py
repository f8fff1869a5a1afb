# LLaVA pre-training, Qwen2.5 7B Instruct + SigLIP So400m/14-384 (projector only), 1 epoch:
#     xtuner train llava_qwen2_5_7b_instruct_siglip_so400m_p14_384_e1_pretrain --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/vision/siglip_so400m_p14_384.py',
    '../../_base_/llava/pretrain.py',
]
