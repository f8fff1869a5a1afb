# Reward model, full, of Qwen2.5 7B Instruct on ultrafeedback, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train qwen2_5_7b_instruct_reward_full_ultrafeedback_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/qwen/qwen2_5_7b_instruct.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/full.py',
]
reward_token_id = 151654  # <|vision_pad|>: Qwen2.5 has no reserved token; text never holds it
