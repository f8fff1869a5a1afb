# LoRA (r64/a16, v0) on every linear layer of a bf16 model; the learning rate is the algorithm's.
method_title = 'LoRA'
launch = 'xtuner train {name} --deepspeed deepspeed_zero2'
lora = dict(r=64, lora_alpha=16, lora_dropout=0.1, bias='none')
