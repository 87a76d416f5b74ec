"""The project's federation as a Flower App: a thin ClientApp and ServerApp over the project's modules."""
