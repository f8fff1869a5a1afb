# Yi-1.5 34B Chat, lora on alpaca, 3 epochs:
#     xtuner train yi1_5_34b_chat_lora_alpaca_e3 --deepspeed deepspeed_zero2
_base_ = [
    '../../_base_/models/yi/yi1_5_34b_chat.py',
    '../../_base_/datasets/alpaca.py',
    '../../_base_/methods/lora.py',
    '../../_base_/schedules/adamw_cosine.py',
    '../../_base_/default_runtime.py',
]
