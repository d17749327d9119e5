import datetime

from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from trunkplane.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RecordFraudAlertRequest(_message.Message):
    __slots__ = ("tenant", "kind", "detail", "extension", "route_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    kind: str
    detail: str
    extension: str
    route_id: str
    def __init__(self, tenant: _Optional[str] = ..., kind: _Optional[str] = ..., detail: _Optional[str] = ..., extension: _Optional[str] = ..., route_id: _Optional[str] = ...) -> None: ...

class RecordFraudAlertResponse(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class CallGuard(_message.Message):
    __slots__ = ("max_calls_per_minute", "allow_prefixes", "block_prefixes", "daily_cap")
    MAX_CALLS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    ALLOW_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    BLOCK_PREFIXES_FIELD_NUMBER: _ClassVar[int]
    DAILY_CAP_FIELD_NUMBER: _ClassVar[int]
    max_calls_per_minute: int
    allow_prefixes: _containers.RepeatedScalarFieldContainer[str]
    block_prefixes: _containers.RepeatedScalarFieldContainer[str]
    daily_cap: int
    def __init__(self, max_calls_per_minute: _Optional[int] = ..., allow_prefixes: _Optional[_Iterable[str]] = ..., block_prefixes: _Optional[_Iterable[str]] = ..., daily_cap: _Optional[int] = ...) -> None: ...

class TenantPolicy(_message.Message):
    __slots__ = ("tenant", "guard", "business_hours")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GUARD_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_HOURS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    guard: CallGuard
    business_hours: BusinessHours
    def __init__(self, tenant: _Optional[str] = ..., guard: _Optional[_Union[CallGuard, _Mapping]] = ..., business_hours: _Optional[_Union[BusinessHours, _Mapping]] = ...) -> None: ...

class BusinessHours(_message.Message):
    __slots__ = ("timezone", "days", "start", "end")
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    timezone: str
    days: _containers.RepeatedScalarFieldContainer[str]
    start: str
    end: str
    def __init__(self, timezone: _Optional[str] = ..., days: _Optional[_Iterable[str]] = ..., start: _Optional[str] = ..., end: _Optional[str] = ...) -> None: ...

class GetTenantPolicyRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class UpdateTenantPolicyRequest(_message.Message):
    __slots__ = ("tenant", "policy", "update_mask", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    policy: TenantPolicy
    update_mask: _field_mask_pb2.FieldMask
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., policy: _Optional[_Union[TenantPolicy, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class DialPattern(_message.Message):
    __slots__ = ("match", "prefix", "prepend")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PREPEND_FIELD_NUMBER: _ClassVar[int]
    match: str
    prefix: str
    prepend: str
    def __init__(self, match: _Optional[str] = ..., prefix: _Optional[str] = ..., prepend: _Optional[str] = ...) -> None: ...

class RouteTrunk(_message.Message):
    __slots__ = ("trunk_id", "weight", "trunk_name")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    weight: int
    trunk_name: str
    def __init__(self, trunk_id: _Optional[str] = ..., weight: _Optional[int] = ..., trunk_name: _Optional[str] = ...) -> None: ...

class OutboundRoute(_message.Message):
    __slots__ = ("id", "tenant", "name", "position", "dial_patterns", "trunks", "strategy", "allowed_extensions", "enabled", "description", "version", "etag", "create_time", "update_time", "guard")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    DIAL_PATTERNS_FIELD_NUMBER: _ClassVar[int]
    TRUNKS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_EXTENSIONS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    GUARD_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    name: str
    position: int
    dial_patterns: _containers.RepeatedCompositeFieldContainer[DialPattern]
    trunks: _containers.RepeatedCompositeFieldContainer[RouteTrunk]
    strategy: str
    allowed_extensions: _containers.RepeatedScalarFieldContainer[str]
    enabled: bool
    description: str
    version: int
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    guard: CallGuard
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., name: _Optional[str] = ..., position: _Optional[int] = ..., dial_patterns: _Optional[_Iterable[_Union[DialPattern, _Mapping]]] = ..., trunks: _Optional[_Iterable[_Union[RouteTrunk, _Mapping]]] = ..., strategy: _Optional[str] = ..., allowed_extensions: _Optional[_Iterable[str]] = ..., enabled: _Optional[bool] = ..., description: _Optional[str] = ..., version: _Optional[int] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., guard: _Optional[_Union[CallGuard, _Mapping]] = ...) -> None: ...

class InboundRoute(_message.Message):
    __slots__ = ("id", "tenant", "did_pattern", "caller_id_pattern", "trunk_id", "destination", "enabled", "description", "version", "etag", "create_time", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DID_PATTERN_FIELD_NUMBER: _ClassVar[int]
    CALLER_ID_PATTERN_FIELD_NUMBER: _ClassVar[int]
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    did_pattern: str
    caller_id_pattern: str
    trunk_id: str
    destination: str
    enabled: bool
    description: str
    version: int
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., did_pattern: _Optional[str] = ..., caller_id_pattern: _Optional[str] = ..., trunk_id: _Optional[str] = ..., destination: _Optional[str] = ..., enabled: _Optional[bool] = ..., description: _Optional[str] = ..., version: _Optional[int] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateOutboundRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: OutboundRoute
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[_Union[OutboundRoute, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class UpdateOutboundRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "changes", "update_mask", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    changes: OutboundRoute
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., changes: _Optional[_Union[OutboundRoute, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class OutboundRouteResponse(_message.Message):
    __slots__ = ("route", "position")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    route: OutboundRoute
    position: int
    def __init__(self, route: _Optional[_Union[OutboundRoute, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class CreateInboundRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: InboundRoute
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[_Union[InboundRoute, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class UpdateInboundRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "changes", "update_mask", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    changes: InboundRoute
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., changes: _Optional[_Union[InboundRoute, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class InboundRouteResponse(_message.Message):
    __slots__ = ("route", "position")
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    route: InboundRoute
    position: int
    def __init__(self, route: _Optional[_Union[InboundRoute, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...

class GetRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class DeleteRouteRequest(_message.Message):
    __slots__ = ("tenant", "route", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    route: str
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., route: _Optional[str] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class ListRoutesRequest(_message.Message):
    __slots__ = ("tenant", "page_size", "page_token", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    page_size: int
    page_token: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class ListOutboundRoutesResponse(_message.Message):
    __slots__ = ("routes", "next_page_token", "total_size", "view_position")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[OutboundRoute]
    next_page_token: str
    total_size: int
    view_position: int
    def __init__(self, routes: _Optional[_Iterable[_Union[OutboundRoute, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., view_position: _Optional[int] = ...) -> None: ...

class ListInboundRoutesResponse(_message.Message):
    __slots__ = ("routes", "next_page_token", "total_size", "view_position")
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    routes: _containers.RepeatedCompositeFieldContainer[InboundRoute]
    next_page_token: str
    total_size: int
    view_position: int
    def __init__(self, routes: _Optional[_Iterable[_Union[InboundRoute, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., view_position: _Optional[int] = ...) -> None: ...

class GetRouteHistoryResponse(_message.Message):
    __slots__ = ("route_id", "entries", "view_position")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.HistoryEntry]
    view_position: int
    def __init__(self, route_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.HistoryEntry, _Mapping]]] = ..., view_position: _Optional[int] = ...) -> None: ...

class ResolveOutboundRequest(_message.Message):
    __slots__ = ("tenant", "number", "extension", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    number: str
    extension: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., number: _Optional[str] = ..., extension: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("trunk_id", "trunk_name", "weight")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    trunk_name: str
    weight: int
    def __init__(self, trunk_id: _Optional[str] = ..., trunk_name: _Optional[str] = ..., weight: _Optional[int] = ...) -> None: ...

class ResolveOutboundResponse(_message.Message):
    __slots__ = ("route_id", "route_name", "strategy", "matched_pattern", "number", "candidates", "skipped", "view_position")
    ROUTE_ID_FIELD_NUMBER: _ClassVar[int]
    ROUTE_NAME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    MATCHED_PATTERN_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    route_id: str
    route_name: str
    strategy: str
    matched_pattern: DialPattern
    number: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    skipped: _containers.RepeatedScalarFieldContainer[str]
    view_position: int
    def __init__(self, route_id: _Optional[str] = ..., route_name: _Optional[str] = ..., strategy: _Optional[str] = ..., matched_pattern: _Optional[_Union[DialPattern, _Mapping]] = ..., number: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., skipped: _Optional[_Iterable[str]] = ..., view_position: _Optional[int] = ...) -> None: ...

class PbxTarget(_message.Message):
    __slots__ = ("uri", "priority", "weight")
    URI_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    uri: str
    priority: int
    weight: int
    def __init__(self, uri: _Optional[str] = ..., priority: _Optional[int] = ..., weight: _Optional[int] = ...) -> None: ...

class PbxAccess(_message.Message):
    __slots__ = ("tenant", "source_cidrs", "username", "password", "password_set", "targets", "enabled", "version", "etag", "update_time")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_CIDRS_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_SET_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    source_cidrs: _containers.RepeatedScalarFieldContainer[str]
    username: str
    password: str
    password_set: bool
    targets: _containers.RepeatedCompositeFieldContainer[PbxTarget]
    enabled: bool
    version: int
    etag: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., source_cidrs: _Optional[_Iterable[str]] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., password_set: _Optional[bool] = ..., targets: _Optional[_Iterable[_Union[PbxTarget, _Mapping]]] = ..., enabled: _Optional[bool] = ..., version: _Optional[int] = ..., etag: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPbxAccessRequest(_message.Message):
    __slots__ = ("tenant", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class UpdatePbxAccessRequest(_message.Message):
    __slots__ = ("tenant", "pbx", "update_mask", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PBX_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    pbx: PbxAccess
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., pbx: _Optional[_Union[PbxAccess, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class PbxAccessResponse(_message.Message):
    __slots__ = ("pbx", "position")
    PBX_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    pbx: PbxAccess
    position: int
    def __init__(self, pbx: _Optional[_Union[PbxAccess, _Mapping]] = ..., position: _Optional[int] = ...) -> None: ...
