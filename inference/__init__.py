"""Generation on GPU workers. torch and transformers are imported lazily, inside the worker only."""
