"""Where ciphertext lives on disk: durable writes, staging, publication."""
