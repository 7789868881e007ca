"""Training: data preparation, LoRA/QLoRA/DoRA fine-tuning, evaluation. Never imports the gateway."""
