"""The project's federation as a Flower App: a thin ClientApp and ServerApp over the library.

The root pyproject.toml names them ([tool.flwr.app.components]), so `flwr run .`
ships this package, model.py and the rest of fedmnist/ as the code that runs.
"""
