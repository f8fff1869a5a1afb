# Reward model, qlora, of InternLM2.5 7B Chat on ultrafeedback, 1 epoch:
#     xtuner train internlm2_5_chat_7b_reward_qlora_ultrafeedback_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/internlm/internlm2_5_chat_7b.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/qlora.py',
]
reward_token_id = 92527  # [UNUSED_TOKEN_130] (v0)
lr = 1e-4  # v0's LoRA/QLoRA reward model
