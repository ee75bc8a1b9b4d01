"""The public contract: the study definition and the API's response models."""
