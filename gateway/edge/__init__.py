"""The request path at the HTTP edge: OpenAI routes, feedback, health, OpenAPI, schemas, guarding, observation."""
