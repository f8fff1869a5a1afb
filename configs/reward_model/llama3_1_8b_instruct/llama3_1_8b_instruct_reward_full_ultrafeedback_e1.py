# Reward model, full, of Llama 3.1 8B Instruct on ultrafeedback, 1 epoch:
#     NPROC_PER_NODE=8 xtuner train llama3_1_8b_instruct_reward_full_ultrafeedback_e1 --deepspeed deepspeed_zero3
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/full.py',
]
reward_token_id = 128002  # <|reserved_special_token_0|> (v0)
