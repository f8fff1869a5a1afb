# What the model families share unless their file says otherwise.
trust_remote_code = False  # True: the checkpoint ships its own modeling code
use_varlen_attn = True  # packed samples never attend to each other (xtuner's varlen backend)
lora_target_modules = None  # None: every linear layer except the output head
