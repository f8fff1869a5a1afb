# Full fine-tuning: every weight is trained (no adapters, no quantization).
method_title = 'full fine-tuning (every weight is trained)'
launch = 'NPROC_PER_NODE=8 xtuner train {name} --deepspeed deepspeed_zero3'
lr = 2e-5
