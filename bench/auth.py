"""What TLS and token checking cost per call: ListProviderTemplates from `trunkplane serve`
with TLS and a bearer token, with a token only (TRUNKPLANE_TLS=off), and the same response
from a bare gRPC server in plaintext with no interceptor, in the same run.

    .venv/bin/python bench/auth.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import grpc
from commands import free_port

from common import machine, server_env
from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

BARE_SERVER = textwrap.dedent("""
    import sys
    from concurrent import futures
    import grpc
    from domain.templates import TEMPLATES
    from trunkplane.v1 import trunk_pb2, trunk_pb2_grpc

    class Bare(trunk_pb2_grpc.TrunkServiceServicer):
        def ListProviderTemplates(self, request, context):  # the same work as ours
            return trunk_pb2.ListProviderTemplatesResponse(templates=[
                trunk_pb2.ProviderTemplate(id=t.id, display_name=t.display_name,
                                           description=t.description,
                                           transports=list(t.transports),
                                           defaults=trunk_pb2.Trunk(**t.settings))
                for t in TEMPLATES.values()])

    server = grpc.server(futures.ThreadPoolExecutor(32))
    trunk_pb2_grpc.add_TrunkServiceServicer_to_server(Bare(), server)
    server.add_insecure_port(sys.argv[1])
    server.start()
    server.wait_for_termination()
""")


def rate(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...], seconds: float) -> float:
    stub = trunk_pb2_grpc.TrunkServiceStub(channel)
    request = trunk_pb2.ListProviderTemplatesRequest()
    stub.ListProviderTemplates(request, metadata=metadata, timeout=30, wait_for_ready=True)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        stub.ListProviderTemplates(request, metadata=metadata)
        count += 1
    return count / (time.perf_counter() - started)


def serve(directory: Path, tls: bool) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    env = server_env(directory, address, TRUNKPLANE_TLS="on" if tls else "off")
    server = subprocess.Popen([str(Path(sys.executable).parent / "trunkplane"), "serve"],
                              env=env)
    deadline = time.monotonic() + 30
    while not (directory / "admin.token").exists() or (tls and not (
            directory / "tls.crt").exists()):
        if time.monotonic() > deadline or server.poll() is not None:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    time.sleep(0.5)
    return server, address


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        address = f"127.0.0.1:{free_port()}"
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, address])
        try:
            results["bare gRPC, plaintext, no checks"] = rate(
                grpc.insecure_channel(address), (), args.seconds)
        finally:
            bare.terminate()
            bare.wait()
        for tls in (False, True):
            directory = Path(tmp) / ("tls" if tls else "plain")
            server, address = serve(directory, tls)
            try:
                token = (directory / "admin.token").read_text().strip()
                channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(
                    (directory / "tls.crt").read_bytes())) if tls else grpc.insecure_channel(
                    address)
                label = "trunkplane, TLS + token" if tls else "trunkplane, token, no TLS"
                results[label] = rate(channel, (("authorization", f"Bearer {token}"),),
                                      args.seconds)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
    base = results["bare gRPC, plaintext, no checks"]
    for label, calls in results.items():
        extra = (1 / calls - 1 / base) * 1e6
        print(f"{label:<34} {calls:8.0f} calls/s  {extra:+7.0f} µs per call")


if __name__ == "__main__":
    main()
