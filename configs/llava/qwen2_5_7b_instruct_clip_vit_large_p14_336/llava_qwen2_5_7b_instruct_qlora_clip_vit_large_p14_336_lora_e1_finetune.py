# LLaVA fine-tuning, Qwen2.5 7B Instruct (QLoRA) + CLIP ViT-L/14-336 (LoRA), 1 epoch, from the pre-trained projector:
#     xtuner train llava_qwen2_5_7b_instruct_qlora_clip_vit_large_p14_336_lora_e1_finetune --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/vision/clip_vit_large_p14_336.py',
    '../../_base_/llava/finetune.py',
]
pretrained_pth = './work_dirs/llava_qwen2_5_7b_instruct_clip_vit_large_p14_336_e1_pretrain'  # its work dir: the last checkpoint
