# LLaVA pre-training, Llama 3.1 8B Instruct + SigLIP So400m/14-384 (projector only), 1 epoch:
#     xtuner train llava_llama3_1_8b_instruct_siglip_so400m_p14_384_e1_pretrain --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/vision/siglip_so400m_p14_384.py',
    '../../_base_/llava/pretrain.py',
]
