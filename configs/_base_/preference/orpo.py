# ORPO (v0's values: 5 epochs as in the ORPO repository, beta 0.1).
_base_ = './_shared.py'
preference_method = 'orpo'
algorithm_title = 'ORPO'
loss_beta = 0.1
dataset_title = 'UltraFeedback (binarized, cleaned)'
data_path = 'argilla/ultrafeedback-binarized-preferences-cleaned'
dataset_map_fn = 'orpo_dpo_mix_40k_map_fn'
max_epochs = 5
lr = 5e-6
