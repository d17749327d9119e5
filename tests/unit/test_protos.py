"""The committed gRPC stubs must be what protoc makes of the committed .proto files."""

from __future__ import annotations

import shutil
from pathlib import Path

from grpc_tools import protoc

PROTOS = Path(__file__).resolve().parents[2] / "protos"
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def test_generated_stubs_are_fresh(tmp_path: Path) -> None:
    shutil.copytree(PROTOS / "trunkplane", tmp_path / "trunkplane",
                    ignore=shutil.ignore_patterns(*(f"*{g}" for g in GENERATED)))
    sources = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("trunkplane/v1/*.proto"))
    include = str(Path(protoc.__file__).parent / "_proto")
    status = protoc.main(["protoc", f"-I{tmp_path}", f"-I{include}", f"--python_out={tmp_path}",
                          f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", *sources])
    assert status == 0
    stale = [
        path.name for path in (PROTOS / "trunkplane" / "v1").iterdir()
        if path.name.endswith(GENERATED)
        and path.read_text() != (tmp_path / "trunkplane" / "v1" / path.name).read_text()
    ]
    assert stale == [], f"stale stubs {stale}: run `make protos`"
    made = {p.name for p in (tmp_path / "trunkplane" / "v1").iterdir()
            if p.name.endswith(GENERATED)}
    committed = {p.name for p in (PROTOS / "trunkplane" / "v1").iterdir()
                 if p.name.endswith(GENERATED)}
    assert made == committed
