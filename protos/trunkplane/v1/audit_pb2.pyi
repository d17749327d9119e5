import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trunkplane.v1 import common_pb2 as _common_pb2
from trunkplane.v1 import trunk_pb2 as _trunk_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeFilter(_message.Message):
    __slots__ = ("tenant", "subject", "actor", "event_type", "start_time", "end_time", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    subject: str
    actor: str
    event_type: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., subject: _Optional[str] = ..., actor: _Optional[str] = ..., event_type: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., min_position: _Optional[int] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("position", "tenant", "subject_kind", "subject_id", "subject_name", "entry")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    position: int
    tenant: str
    subject_kind: str
    subject_id: str
    subject_name: str
    entry: _common_pb2.HistoryEntry
    def __init__(self, position: _Optional[int] = ..., tenant: _Optional[str] = ..., subject_kind: _Optional[str] = ..., subject_id: _Optional[str] = ..., subject_name: _Optional[str] = ..., entry: _Optional[_Union[_common_pb2.HistoryEntry, _Mapping]] = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ("filter", "page_size", "page_token")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    filter: ChangeFilter
    page_size: int
    page_token: str
    def __init__(self, filter: _Optional[_Union[ChangeFilter, _Mapping]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ("changes", "next_page_token", "view_position")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    next_page_token: str
    view_position: int
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., view_position: _Optional[int] = ...) -> None: ...

class ExportChangesRequest(_message.Message):
    __slots__ = ("filter", "format")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    filter: ChangeFilter
    format: str
    def __init__(self, filter: _Optional[_Union[ChangeFilter, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PointInTime(_message.Message):
    __slots__ = ("version", "time")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    version: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, version: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetTrunkAtRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    at: PointInTime
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., at: _Optional[_Union[PointInTime, _Mapping]] = ...) -> None: ...

class GetTrunkAtResponse(_message.Message):
    __slots__ = ("trunk", "deleted")
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    trunk: _trunk_pb2.Trunk
    deleted: bool
    def __init__(self, trunk: _Optional[_Union[_trunk_pb2.Trunk, _Mapping]] = ..., deleted: _Optional[bool] = ...) -> None: ...

class DiffTrunkRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "to")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    to: PointInTime
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., to: _Optional[_Union[PointInTime, _Mapping]] = ..., **kwargs) -> None: ...

class DiffTrunkResponse(_message.Message):
    __slots__ = ("from_version", "to_version", "changes")
    FROM_VERSION_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    from_version: int
    to_version: int
    changes: _containers.RepeatedCompositeFieldContainer[_common_pb2.FieldChange]
    def __init__(self, from_version: _Optional[int] = ..., to_version: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[_common_pb2.FieldChange, _Mapping]]] = ...) -> None: ...

class GetRouteAtRequest(_message.Message):
    __slots__ = ("tenant", "route", "at")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    at: PointInTime
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., at: _Optional[_Union[PointInTime, _Mapping]] = ...) -> None: ...

class GetRouteAtResponse(_message.Message):
    __slots__ = ("kind", "name", "version", "deleted", "settings")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DELETED_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    kind: str
    name: str
    version: int
    deleted: bool
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    def __init__(self, kind: _Optional[str] = ..., name: _Optional[str] = ..., version: _Optional[int] = ..., deleted: _Optional[bool] = ..., settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ...) -> None: ...

class Setting(_message.Message):
    __slots__ = ("field", "value")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    field: str
    value: str
    def __init__(self, field: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class DiffRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "to")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    FROM_FIELD_NUMBER: _ClassVar[int]
    TO_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    to: PointInTime
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., to: _Optional[_Union[PointInTime, _Mapping]] = ..., **kwargs) -> None: ...

class SignedHead(_message.Message):
    __slots__ = ("tree_size", "timestamp_ms", "root_hash", "key_id", "signature", "position", "public_key")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    timestamp_ms: int
    root_hash: bytes
    key_id: str
    signature: bytes
    position: int
    public_key: str
    def __init__(self, tree_size: _Optional[int] = ..., timestamp_ms: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., key_id: _Optional[str] = ..., signature: _Optional[bytes] = ..., position: _Optional[int] = ..., public_key: _Optional[str] = ...) -> None: ...

class GetSignedHeadRequest(_message.Message):
    __slots__ = ("tree_size", "position")
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    tree_size: int
    position: int
    def __init__(self, tree_size: _Optional[int] = ..., position: _Optional[int] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("first_size", "second_size")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    SECOND_SIZE_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    second_size: int
    def __init__(self, first_size: _Optional[int] = ..., second_size: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("first_size", "first_root", "second", "path")
    FIRST_SIZE_FIELD_NUMBER: _ClassVar[int]
    FIRST_ROOT_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    first_size: int
    first_root: bytes
    second: SignedHead
    path: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, first_size: _Optional[int] = ..., first_root: _Optional[bytes] = ..., second: _Optional[_Union[SignedHead, _Mapping]] = ..., path: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("position", "tree_size")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    position: int
    tree_size: int
    def __init__(self, position: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("position", "leaf_index", "leaf_hash", "path", "head")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LEAF_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    HEAD_FIELD_NUMBER: _ClassVar[int]
    position: int
    leaf_index: int
    leaf_hash: bytes
    path: _containers.RepeatedScalarFieldContainer[bytes]
    head: SignedHead
    def __init__(self, position: _Optional[int] = ..., leaf_index: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., path: _Optional[_Iterable[bytes]] = ..., head: _Optional[_Union[SignedHead, _Mapping]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("kind", "position", "tenant", "subject_kind", "subject_id", "subject_name", "version", "detail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    position: int
    tenant: str
    subject_kind: str
    subject_id: str
    subject_name: str
    version: int
    detail: str
    def __init__(self, kind: _Optional[str] = ..., position: _Optional[int] = ..., tenant: _Optional[str] = ..., subject_kind: _Optional[str] = ..., subject_id: _Optional[str] = ..., subject_name: _Optional[str] = ..., version: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class VerifyLogRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyLogResponse(_message.Message):
    __slots__ = ("intact", "checked", "tree_size", "root_hash", "head_position", "signed_head", "findings", "omitted")
    INTACT_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HASH_FIELD_NUMBER: _ClassVar[int]
    HEAD_POSITION_FIELD_NUMBER: _ClassVar[int]
    SIGNED_HEAD_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    OMITTED_FIELD_NUMBER: _ClassVar[int]
    intact: bool
    checked: int
    tree_size: int
    root_hash: bytes
    head_position: int
    signed_head: SignedHead
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    omitted: int
    def __init__(self, intact: _Optional[bool] = ..., checked: _Optional[int] = ..., tree_size: _Optional[int] = ..., root_hash: _Optional[bytes] = ..., head_position: _Optional[int] = ..., signed_head: _Optional[_Union[SignedHead, _Mapping]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., omitted: _Optional[int] = ...) -> None: ...
