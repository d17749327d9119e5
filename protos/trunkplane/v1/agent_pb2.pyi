import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Direction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIRECTION_UNSPECIFIED: _ClassVar[Direction]
    OUTBOUND: _ClassVar[Direction]
    INBOUND: _ClassVar[Direction]
DIRECTION_UNSPECIFIED: Direction
OUTBOUND: Direction
INBOUND: Direction

class AcquireChannelRequest(_message.Message):
    __slots__ = ("tenant", "direction", "number", "extension", "did", "trunk", "call_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    DID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    direction: Direction
    number: str
    extension: str
    did: str
    trunk: str
    call_id: str
    def __init__(self, tenant: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., number: _Optional[str] = ..., extension: _Optional[str] = ..., did: _Optional[str] = ..., trunk: _Optional[str] = ..., call_id: _Optional[str] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease_id", "trunk_id", "trunk_name", "direction", "dial_number", "destination", "route_id", "expires_at", "call_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    DIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    trunk_id: str
    trunk_name: str
    direction: Direction
    dial_number: str
    destination: str
    route_id: str
    expires_at: _timestamp_pb2.Timestamp
    call_id: str
    def __init__(self, lease_id: _Optional[str] = ..., trunk_id: _Optional[str] = ..., trunk_name: _Optional[str] = ..., direction: _Optional[_Union[Direction, str]] = ..., dial_number: _Optional[str] = ..., destination: _Optional[str] = ..., route_id: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., call_id: _Optional[str] = ...) -> None: ...

class Consideration(_message.Message):
    __slots__ = ("trunk_id", "trunk_name", "outcome", "detail")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    trunk_name: str
    outcome: str
    detail: str
    def __init__(self, trunk_id: _Optional[str] = ..., trunk_name: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class AcquireChannelResponse(_message.Message):
    __slots__ = ("lease", "considered")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    considered: _containers.RepeatedCompositeFieldContainer[Consideration]
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., considered: _Optional[_Iterable[_Union[Consideration, _Mapping]]] = ...) -> None: ...

class RenewChannelRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseChannelRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ReleaseChannelResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: bool
    def __init__(self, released: _Optional[bool] = ...) -> None: ...

class ReportCallFailureRequest(_message.Message):
    __slots__ = ("lease_id", "sip_code")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SIP_CODE_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    sip_code: int
    def __init__(self, lease_id: _Optional[str] = ..., sip_code: _Optional[int] = ...) -> None: ...

class ReportCallFailureResponse(_message.Message):
    __slots__ = ("failed_over", "lease", "considered")
    FAILED_OVER_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    CONSIDERED_FIELD_NUMBER: _ClassVar[int]
    failed_over: bool
    lease: Lease
    considered: _containers.RepeatedCompositeFieldContainer[Consideration]
    def __init__(self, failed_over: _Optional[bool] = ..., lease: _Optional[_Union[Lease, _Mapping]] = ..., considered: _Optional[_Iterable[_Union[Consideration, _Mapping]]] = ...) -> None: ...
