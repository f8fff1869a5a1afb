"""Token ids and markers shared by the data pipeline, collate functions and models.

The values are XTuner v0's: datasets processed offline by v0 store these ids, so they must not
change.
"""

__all__ = [
    "IGNORE_INDEX",
    "DEFAULT_PAD_TOKEN_INDEX",
    "IMAGE_TOKEN_INDEX",
    "DEFAULT_IMAGE_TOKEN",
]

# Label id that the cross-entropy loss skips (PyTorch's default ``ignore_index``).
IGNORE_INDEX = -100
# Id used to pad ``input_ids`` in a batch; v0 pads with 0, not with the tokenizer's pad id.
DEFAULT_PAD_TOKEN_INDEX = 0
# Placeholder id put into ``input_ids`` where the image features are spliced in (LLaVA).
IMAGE_TOKEN_INDEX = -200
# The text marker in a prompt that becomes ``IMAGE_TOKEN_INDEX`` after tokenization.
DEFAULT_IMAGE_TOKEN = "<image>"
