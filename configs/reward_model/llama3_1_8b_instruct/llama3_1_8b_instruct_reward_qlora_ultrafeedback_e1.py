# Reward model, qlora, of Llama 3.1 8B Instruct on ultrafeedback, 1 epoch:
#     xtuner train llama3_1_8b_instruct_reward_qlora_ultrafeedback_e1 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/llama/llama3_1_8b_instruct.py',
    '../../_base_/preference/reward.py',
    '../../_base_/preference/qlora.py',
]
reward_token_id = 128002  # <|reserved_special_token_0|> (v0)
lr = 1e-4  # v0's LoRA/QLoRA reward model
