# Reward model, full, of InternLM2.5 7B Chat on ultrafeedback, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train internlm2_5_chat_7b_reward_full_ultrafeedback_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/full.py',
]
reward_token_id = 92527  # [UNUSED_TOKEN_130] (v0)
