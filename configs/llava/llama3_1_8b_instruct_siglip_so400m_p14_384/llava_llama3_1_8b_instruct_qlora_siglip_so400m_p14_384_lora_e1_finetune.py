# LLaVA fine-tuning, Llama 3.1 8B Instruct (QLoRA) + SigLIP So400m/14-384 (LoRA), 1 epoch, from the pre-trained projector:
#     xtuner train llava_llama3_1_8b_instruct_qlora_siglip_so400m_p14_384_lora_e1_finetune --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/vision/siglip_so400m_p14_384.py',
    '../../_base_/llava/finetune.py',
]
pretrained_pth = './work_dirs/llava_llama3_1_8b_instruct_siglip_so400m_p14_384_e1_pretrain'  # its work dir: the last checkpoint
