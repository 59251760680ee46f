"""moe_serve — the Python client of moe-serve, a networked Mixture-of-Experts server.

    from moe_serve import Client
    with Client("localhost:50051") as client:
        y = client.forward(layer=0, hidden_states=x)   # x: numpy or torch, [..., hidden]

moe_serve.hf.offload(model, client) replaces a Hugging Face transformers model's MoE blocks with
calls to the router (needs torch and transformers). See docs/CLIENTS.md.
"""
from moe_serve.client import AsyncClient, Client, ForwardResult, ForwardStream
from moe_serve.errors import MoeServeError

__all__ = ["AsyncClient", "Client", "ForwardResult", "ForwardStream", "MoeServeError"]
__version__ = "0.1.0"
