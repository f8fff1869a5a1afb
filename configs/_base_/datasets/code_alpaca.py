# Dataset: CodeAlpaca (20k code instructions). Source, map fn, sample length and v0's epochs for
# it.
_base_ = './_shared.py'
dataset_title = 'CodeAlpaca (20k code instructions)'
data_path = 'HuggingFaceH4/CodeAlpaca_20K'
dataset_map_fn = 'code_alpaca_map_fn'
max_epochs = 3
system_template = 'coder'
evaluation_inputs = [
    ('写一个Python函数，将十六进制颜色代码（如#0066ee）转换为对应的红、绿、蓝（RGB）三个颜色分量值，'
     '并以元组的形式返回。'),
    ('Write a Python function that takes a hexadecimal color code (e.g., #0066ee) as input '
     'and converts it into the corresponding red, green, and blue (RGB) color component '
     'values.'),
]
evaluation_freq = 100
