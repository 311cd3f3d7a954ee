"""`seqgan serve`: an HTTP API over a run's generators, with micro-batching and a web chat page.

Modules: `batcher` (asyncio micro-batching onto one worker thread; no web dependency),
`schemas` (request validation), `app` (the FastAPI app), `server` (uvicorn on a bound socket),
`static/` (the chat page: plain HTML, JS and CSS).
"""
