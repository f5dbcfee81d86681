"""Developer tools: the local dev server launcher and the node smoke test.

Nothing in the runtime (engine, HTTP edge, backends, store, client) imports this package;
``tests/test_packaging.py`` pins that.
"""
