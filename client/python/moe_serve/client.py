"""Clients of the moe-serve router (moe.v1.MoeService): Client (blocking) and AsyncClient
(asyncio). One long-lived channel each; safe to share between threads (Client) or tasks
(AsyncClient). Every failed call raises MoeServeError carrying the gRPC code and message."""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import grpc
import numpy as np

from moe_serve import tensors
from moe_serve._proto import moe_pb2, moe_pb2_grpc
from moe_serve.errors import MoeServeError

# What the router accepts by default (--max_tokens 8192 at hidden 7168 in f32 is ~235 MB).
DEFAULT_MAX_MESSAGE_BYTES = 1 << 30


@dataclass
class ForwardResult:
    """A Forward with return_routing=True: the output (the caller's kind, dtype and shape), and per
    token the routed experts best first and their combine weights ([tokens, top_k]; a token with
    fewer experts, e.g. dropped by capacity, is padded with -1 and 0), and the weight of the
    layer's always-on (shared or dense) MLP ([tokens]; 0 where it has none)."""

    output: Any
    expert_ids: np.ndarray
    expert_weights: np.ndarray
    always_on_weights: np.ndarray


def _routing_arrays(routing: Sequence[moe_pb2.TokenRouting]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = max((len(r.experts) for r in routing), default=0)
    ids = np.full((len(routing), k), -1, dtype=np.int32)
    weights = np.zeros((len(routing), k), dtype=np.float32)
    always_on = np.zeros(len(routing), dtype=np.float32)
    for t, r in enumerate(routing):
        ids[t, : len(r.experts)] = r.experts
        weights[t, : len(r.weights)] = r.weights
        always_on[t] = r.always_on_weight
    return ids, weights, always_on


def _credentials(tls: bool, root_certificates: Optional[bytes], certificate_chain: Optional[bytes],
                 private_key: Optional[bytes]) -> Optional[grpc.ChannelCredentials]:
    if not tls:
        return None
    return grpc.ssl_channel_credentials(root_certificates=root_certificates, private_key=private_key,
                                        certificate_chain=certificate_chain)


def _channel(api: Any, address: str, tls: bool, root_certificates: Optional[bytes],
             certificate_chain: Optional[bytes], private_key: Optional[bytes], max_message_bytes: int) -> Any:
    """A channel from `api` (grpc or grpc.aio), TLS when asked."""
    credentials = _credentials(tls, root_certificates, certificate_chain, private_key)
    options = _options(max_message_bytes)
    if credentials is not None:
        return api.secure_channel(address, credentials, options)
    return api.insecure_channel(address, options)


def _metadata(token: Optional[str]) -> Optional[List[Tuple[str, str]]]:
    return [("authorization", f"Bearer {token}")] if token else None


def _options(max_message_bytes: int) -> List[Tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class Client:
    """A blocking client of one router.

    address: "host:port". tls: use TLS (root_certificates: PEM of the CA, default the system's;
    certificate_chain/private_key: a client certificate for mTLS). token: sent as
    "authorization: Bearer <token>" on every call. timeout: seconds per call (a deadline the
    router propagates to its workers); None waits as long as the router lets it. model: the model
    name to ask for ("" = the router's only model).
    """

    def __init__(self, address: str, *, tls: bool = False, root_certificates: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 token: Optional[str] = None, timeout: Optional[float] = 30.0, model: str = "",
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._channel = _channel(grpc, address, tls, root_certificates, certificate_chain, private_key,
                                 max_message_bytes)
        self._stub = moe_pb2_grpc.MoeServiceStub(self._channel)
        self._metadata = _metadata(token)
        self._timeout = timeout
        self._model = model
        self.address = address

    def forward(self, layer: int, hidden_states: Any, *, return_routing: bool = False,
                timeout: Optional[float] = None) -> Any:
        """The MoE layer `layer` applied to `hidden_states` ([..., hidden]: numpy float32/float16
        (bfloat16 with ml_dtypes) or torch float32/bfloat16/float16, any device): an array of the
        same kind, dtype, device and shape; with return_routing, a ForwardResult."""
        wire, decode = tensors.encode(hidden_states)
        request = moe_pb2.ForwardRequest(model=self._model, layer=layer, hidden_states=wire,
                                         return_routing=return_routing)
        try:
            response = self._stub.Forward(request, timeout=timeout if timeout is not None else self._timeout,
                                          metadata=self._metadata)
        except grpc.RpcError as e:
            raise MoeServeError.from_rpc_error(e, "Forward") from None
        return _result(response, decode, return_routing)

    def stream(self, timeout: Optional[float] = None, step_timeout: Optional[float] = None) -> "ForwardStream":
        """Opens a ForwardStream: forwards one after another on one stream (its deadline, `timeout`
        seconds or none, covers the whole stream; `step_timeout` seconds or none bounds each step:
        a step without an answer by then cancels the stream and raises DEADLINE_EXCEEDED)."""
        return ForwardStream(self._stub, self._model, self._metadata, timeout, step_timeout)

    @property
    def timeout(self) -> Optional[float]:
        """Seconds per call given at construction (None: no deadline)."""
        return self._timeout

    def model_info(self, timeout: Optional[float] = None) -> moe_pb2.GetModelInfoResponse:
        """The router's GetModelInfo: model type, sizes, per-layer routing, placement, workers."""
        try:
            return self._stub.GetModelInfo(moe_pb2.GetModelInfoRequest(model=self._model),
                                           timeout=timeout if timeout is not None else self._timeout,
                                           metadata=self._metadata)
        except grpc.RpcError as e:
            raise MoeServeError.from_rpc_error(e, "GetModelInfo") from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ForwardStream:
    """One MoeService.ForwardStream: `forward` sends a step and waits for its answer (answers come
    in order). A failed step ends the stream: that call and every later one raise MoeServeError.
    Use as a context manager or call close(). One caller at a time."""

    def __init__(self, stub: moe_pb2_grpc.MoeServiceStub, model: str, metadata: Any, timeout: Optional[float],
                 step_timeout: Optional[float] = None) -> None:
        self._model = model
        self._requests: "queue.Queue[Optional[moe_pb2.ForwardRequest]]" = queue.Queue()
        self._responses = stub.ForwardStream(iter(self._requests.get, None), timeout=timeout, metadata=metadata)
        self._error: Optional[MoeServeError] = None
        self._closed = False
        self._watchdog = _StepWatchdog(self._responses, step_timeout) if step_timeout else None

    def forward(self, layer: int, hidden_states: Any, *, return_routing: bool = False) -> Any:
        """As Client.forward, on the stream."""
        if self._error is not None:
            raise self._error
        if self._closed:
            raise MoeServeError(grpc.StatusCode.FAILED_PRECONDITION, "the stream is closed", "ForwardStream")
        wire, decode = tensors.encode(hidden_states)
        self._requests.put(moe_pb2.ForwardRequest(model=self._model, layer=layer, hidden_states=wire,
                                                  return_routing=return_routing))
        if self._watchdog:
            self._watchdog.deadline = time.monotonic() + self._watchdog.seconds
        try:
            response = next(self._responses)
        except grpc.RpcError as e:
            if self._watchdog and self._watchdog.fired:
                self._error = MoeServeError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                            f"no answer to a step within {self._watchdog.seconds:g} s; the stream "
                                            "was cancelled", "ForwardStream")
            else:
                self._error = MoeServeError.from_rpc_error(e, "ForwardStream")
            raise self._error from None
        except StopIteration:
            self._error = MoeServeError(grpc.StatusCode.UNAVAILABLE, "the stream ended without an answer",
                                        "ForwardStream")
            raise self._error from None
        finally:
            if self._watchdog:
                self._watchdog.deadline = None
        return _result(response, decode, return_routing)

    def close(self) -> None:
        """Half-closes the stream and waits for the router to end it."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog:
            self._watchdog.closed = True
        self._requests.put(None)
        try:
            for _ in self._responses:
                pass
        except grpc.RpcError:
            pass

    def __enter__(self) -> "ForwardStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _StepWatchdog:
    """Bounds each step of a ForwardStream (a stream's own gRPC deadline covers the whole stream):
    the stream sets `deadline` (time.monotonic()) before it waits for an answer and clears it after,
    a plain attribute write, so a step costs no thread wake-up; this thread looks every quarter of
    `seconds` and cancels the call once a step is past its deadline (so a step is cut after
    between 1 and 1.25 x `seconds`). It ends when the call ends or the stream is closed."""

    def __init__(self, call: Any, seconds: float) -> None:
        self.call, self.seconds = call, seconds
        self.deadline: Optional[float] = None
        self.fired = False
        self.closed = False
        threading.Thread(target=self._run, name="moe-serve-step-watchdog", daemon=True).start()

    def _run(self) -> None:
        tick = threading.Event()
        while not self.closed and not self.call.done():
            tick.wait(self.seconds / 4)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self.fired = True
                self.call.cancel()
                return


def _result(response: moe_pb2.ForwardResponse, decode: tensors.Decoder, return_routing: bool) -> Any:
    output = decode(response.output)
    if not return_routing:
        return output
    ids, weights, always_on = _routing_arrays(response.routing)
    return ForwardResult(output=output, expert_ids=ids, expert_weights=weights, always_on_weights=always_on)


class AsyncClient:
    """The asyncio twin of Client (grpc.aio): the same arguments; `await client.forward(...)`.
    Create and use it inside one event loop."""

    def __init__(self, address: str, *, tls: bool = False, root_certificates: Optional[bytes] = None,
                 certificate_chain: Optional[bytes] = None, private_key: Optional[bytes] = None,
                 token: Optional[str] = None, timeout: Optional[float] = 30.0, model: str = "",
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self._channel = _channel(grpc.aio, address, tls, root_certificates, certificate_chain, private_key,
                                 max_message_bytes)
        self._stub = moe_pb2_grpc.MoeServiceStub(self._channel)
        self._metadata = _metadata(token)
        self._timeout = timeout
        self._model = model
        self.address = address

    async def forward(self, layer: int, hidden_states: Any, *, return_routing: bool = False,
                      timeout: Optional[float] = None) -> Any:
        wire, decode = tensors.encode(hidden_states)
        request = moe_pb2.ForwardRequest(model=self._model, layer=layer, hidden_states=wire,
                                         return_routing=return_routing)
        try:
            response = await self._stub.Forward(request, timeout=timeout if timeout is not None else self._timeout,
                                                metadata=self._metadata)
        except grpc.RpcError as e:
            raise MoeServeError.from_rpc_error(e, "Forward") from None
        return _result(response, decode, return_routing)

    async def model_info(self, timeout: Optional[float] = None) -> moe_pb2.GetModelInfoResponse:
        try:
            return await self._stub.GetModelInfo(moe_pb2.GetModelInfoRequest(model=self._model),
                                                 timeout=timeout if timeout is not None else self._timeout,
                                                 metadata=self._metadata)
        except grpc.RpcError as e:
            raise MoeServeError.from_rpc_error(e, "GetModelInfo") from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
