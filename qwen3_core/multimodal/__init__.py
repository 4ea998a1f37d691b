"""Internal (import its public names from ``qwen3_core``): Qwen3-VL-Embedding and
Qwen3-VL-Reranker: text, images and both together, with the official prompts, image sizes and
scores."""
