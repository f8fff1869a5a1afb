# DPO (v0's values: the alignment handbook's lr, 3 epochs, sigmoid loss, beta 0.1).
_base_ = './_shared.py'
preference_method = 'dpo'
algorithm_title = 'DPO'
dpo_loss_type = 'sigmoid'  # sigmoid, hinge, ipo, kto_pair, sppo_hard, nca_pair or robust
loss_beta = 0.1
label_smoothing = 0.0
dataset_title = 'orpo-dpo-mix-40k'
data_path = 'mlabonne/orpo-dpo-mix-40k'
dataset_map_fn = 'orpo_dpo_mix_40k_map_fn'
max_epochs = 3
lr = 5e-7
