# AdamW, gradient clipping, linear warmup then cosine decay to 0 (the epochs come from the
# dataset, the learning rate from the method).
optim_type = 'AdamW'  # a torch.optim class
betas = (0.9, 0.999)
weight_decay = 0
max_norm = 1  # grad clip
warmup_ratio = 0.03
batch_size = 1  # per device
accumulative_counts = 16
dataloader_num_workers = 0
