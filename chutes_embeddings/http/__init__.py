"""The HTTP edge: what stands between a request and the engine.

``guard`` screens every request (host, size, media type, early 429) before anything reads its
body; ``payload`` parses and checks the body once; ``boundary`` runs a cord (parse -> dialect ->
engine verb in a worker thread) and renders errors; ``dialects`` translate each wire format
(native, OpenAI, TEI, Cohere) to engine verbs and back; ``openapi`` and ``metrics`` describe and
measure the routes. Importing it needs the Chutes SDK and light modules only.
"""
