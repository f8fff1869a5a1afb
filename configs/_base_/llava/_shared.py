# What both LLaVA stages share: the AdamW schedule and runtime of the catalog, rendered by
# configs/_templates/llava.py; the stage files set what differs.
_base_ = ['../schedules/adamw_cosine.py', '../default_runtime.py']
config_template = 'llava'  # configs/_templates/llava.py renders LLaVA leaves
launch = 'xtuner train {name} --deepspeed deepspeed_zero2'
context_length = 2048  # text + one image's features per sample (v0: max_length = 2048 - tokens)
max_epochs = 1
accumulative_counts = 1
dataloader_num_workers = 4
evaluation_freq = 500  # iterations between evaluation chats
evaluation_inputs = ['请描述一下这张照片', 'Please describe this picture']
