# Dataset: Colorist (color descriptions -> hex codes). Source, map fn, sample length and v0's
# epochs for it.
_base_ = './_shared.py'
dataset_title = 'Colorist (color descriptions -> hex codes)'
data_path = 'burkelibbey/colors'
dataset_map_fn = 'colors_map_fn'
max_epochs = 5
system_template = 'colorist'
evaluation_inputs = [
    '请给我一个像天空一样清澈透明的蓝色。',
    'Please give me a clear blue like the sky.',
]
evaluation_freq = 200
