# Full fine-tuning: every weight of the policy (or reward model) is trained.
method_title = 'full fine-tuning'
launch = 'NPROC_PER_NODE=8 xtuner train {name} --deepspeed deepspeed_zero3'
