"""The process host: the HTTP server, the embedded vLLM supervisor, model pulls, job runners."""
