"""Config: the root schema, ConfigStore registration and pre-training validation."""
