# Reward model, lora, of Qwen2.5 7B Instruct on ultrafeedback, 1 epoch:
#     xtuner train qwen2_5_7b_instruct_reward_lora_ultrafeedback_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/lora.py',
]
reward_token_id = 151654  # <|vision_pad|>: Qwen2.5 has no reserved token; text never holds it
lr = 1e-4  # v0's LoRA/QLoRA reward model
