"""The upstream: backend pool, health checks, circuit breaker and the proxy to vLLM."""
