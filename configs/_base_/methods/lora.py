# LoRA on every linear layer of a bf16 base model.
method_title = 'LoRA on every linear layer (bf16 base model)'
launch = 'xtuner train {name} --deepspeed deepspeed_zero2'
lr = 2e-4
# peft LoraConfig arguments; the model base sets the target modules (lora_target_modules).
lora = dict(r=64, lora_alpha=16, lora_dropout=0.1, bias='none', task_type='CAUSAL_LM')
