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

class NatSettings(_message.Message):
    __slots__ = ("enabled", "external_ip", "local_networks", "stun_server")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_IP_FIELD_NUMBER: _ClassVar[int]
    LOCAL_NETWORKS_FIELD_NUMBER: _ClassVar[int]
    STUN_SERVER_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    external_ip: str
    local_networks: _containers.RepeatedScalarFieldContainer[str]
    stun_server: str
    def __init__(self, enabled: _Optional[bool] = ..., external_ip: _Optional[str] = ..., local_networks: _Optional[_Iterable[str]] = ..., stun_server: _Optional[str] = ...) -> None: ...

class CallLimits(_message.Message):
    __slots__ = ("max_concurrent_calls", "max_inbound_calls", "max_outbound_calls")
    MAX_CONCURRENT_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_INBOUND_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTBOUND_CALLS_FIELD_NUMBER: _ClassVar[int]
    max_concurrent_calls: int
    max_inbound_calls: int
    max_outbound_calls: int
    def __init__(self, max_concurrent_calls: _Optional[int] = ..., max_inbound_calls: _Optional[int] = ..., max_outbound_calls: _Optional[int] = ...) -> None: ...

class TrunkTimers(_message.Message):
    __slots__ = ("registration_expiry", "backoff_base", "backoff_cap", "qualify", "options_interval", "down_after", "up_after", "ok_codes", "failover_after")
    REGISTRATION_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_BASE_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_CAP_FIELD_NUMBER: _ClassVar[int]
    QUALIFY_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    DOWN_AFTER_FIELD_NUMBER: _ClassVar[int]
    UP_AFTER_FIELD_NUMBER: _ClassVar[int]
    OK_CODES_FIELD_NUMBER: _ClassVar[int]
    FAILOVER_AFTER_FIELD_NUMBER: _ClassVar[int]
    registration_expiry: int
    backoff_base: int
    backoff_cap: int
    qualify: bool
    options_interval: int
    down_after: int
    up_after: int
    ok_codes: _containers.RepeatedScalarFieldContainer[str]
    failover_after: int
    def __init__(self, registration_expiry: _Optional[int] = ..., backoff_base: _Optional[int] = ..., backoff_cap: _Optional[int] = ..., qualify: _Optional[bool] = ..., options_interval: _Optional[int] = ..., down_after: _Optional[int] = ..., up_after: _Optional[int] = ..., ok_codes: _Optional[_Iterable[str]] = ..., failover_after: _Optional[int] = ...) -> None: ...

class Trunk(_message.Message):
    __slots__ = ("id", "tenant", "name", "type", "host", "transport", "username", "password", "auth_id", "max_registrations", "from_user", "from_domain", "peer_addresses", "codecs", "dtmf_mode", "nat", "call_limits", "enabled", "description", "password_set", "version", "etag", "create_time", "update_time", "outbound_proxy", "timers", "client_certificate", "client_key", "client_key_set", "client_certificate_subject", "client_certificate_expires")
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    AUTH_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_REGISTRATIONS_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_FIELD_NUMBER: _ClassVar[int]
    FROM_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    CODECS_FIELD_NUMBER: _ClassVar[int]
    DTMF_MODE_FIELD_NUMBER: _ClassVar[int]
    NAT_FIELD_NUMBER: _ClassVar[int]
    CALL_LIMITS_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_SET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OUTBOUND_PROXY_FIELD_NUMBER: _ClassVar[int]
    TIMERS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_KEY_SET_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_EXPIRES_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    name: str
    type: str
    host: str
    transport: str
    username: str
    password: str
    auth_id: str
    max_registrations: int
    from_user: str
    from_domain: str
    peer_addresses: _containers.RepeatedScalarFieldContainer[str]
    codecs: _containers.RepeatedScalarFieldContainer[str]
    dtmf_mode: str
    nat: NatSettings
    call_limits: CallLimits
    enabled: bool
    description: str
    password_set: bool
    version: int
    etag: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    outbound_proxy: str
    timers: TrunkTimers
    client_certificate: str
    client_key: str
    client_key_set: bool
    client_certificate_subject: str
    client_certificate_expires: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., name: _Optional[str] = ..., type: _Optional[str] = ..., host: _Optional[str] = ..., transport: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., auth_id: _Optional[str] = ..., max_registrations: _Optional[int] = ..., from_user: _Optional[str] = ..., from_domain: _Optional[str] = ..., peer_addresses: _Optional[_Iterable[str]] = ..., codecs: _Optional[_Iterable[str]] = ..., dtmf_mode: _Optional[str] = ..., nat: _Optional[_Union[NatSettings, _Mapping]] = ..., call_limits: _Optional[_Union[CallLimits, _Mapping]] = ..., enabled: _Optional[bool] = ..., description: _Optional[str] = ..., password_set: _Optional[bool] = ..., version: _Optional[int] = ..., etag: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., outbound_proxy: _Optional[str] = ..., timers: _Optional[_Union[TrunkTimers, _Mapping]] = ..., client_certificate: _Optional[str] = ..., client_key: _Optional[str] = ..., client_key_set: _Optional[bool] = ..., client_certificate_subject: _Optional[str] = ..., client_certificate_expires: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateTrunkRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "template", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: Trunk
    template: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[_Union[Trunk, _Mapping]] = ..., template: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class TrunkResponse(_message.Message):
    __slots__ = ("trunk", "warnings", "position")
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    trunk: Trunk
    warnings: _containers.RepeatedScalarFieldContainer[str]
    position: int
    def __init__(self, trunk: _Optional[_Union[Trunk, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., position: _Optional[int] = ...) -> None: ...

class GetTrunkRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class ListTrunksRequest(_message.Message):
    __slots__ = ("tenant", "page_size", "page_token", "type", "enabled", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    page_size: int
    page_token: str
    type: str
    enabled: bool
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., type: _Optional[str] = ..., enabled: _Optional[bool] = ..., min_position: _Optional[int] = ...) -> None: ...

class ListTrunksResponse(_message.Message):
    __slots__ = ("trunks", "next_page_token", "total_size", "view_position")
    TRUNKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    trunks: _containers.RepeatedCompositeFieldContainer[Trunk]
    next_page_token: str
    total_size: int
    view_position: int
    def __init__(self, trunks: _Optional[_Iterable[_Union[Trunk, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., view_position: _Optional[int] = ...) -> None: ...

class UpdateTrunkRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "changes", "update_mask", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    changes: Trunk
    update_mask: _field_mask_pb2.FieldMask
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., changes: _Optional[_Union[Trunk, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class DeleteTrunkRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "etag", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    etag: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., etag: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class ProviderTemplate(_message.Message):
    __slots__ = ("id", "display_name", "description", "defaults", "transports")
    ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    TRANSPORTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    display_name: str
    description: str
    defaults: Trunk
    transports: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., defaults: _Optional[_Union[Trunk, _Mapping]] = ..., transports: _Optional[_Iterable[str]] = ...) -> None: ...

class ListProviderTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProviderTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[ProviderTemplate]
    def __init__(self, templates: _Optional[_Iterable[_Union[ProviderTemplate, _Mapping]]] = ...) -> None: ...

class GetTrunkHistoryRequest(_message.Message):
    __slots__ = ("tenant", "trunk", "min_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunk: str
    min_position: int
    def __init__(self, tenant: _Optional[str] = ..., trunk: _Optional[str] = ..., min_position: _Optional[int] = ...) -> None: ...

class GetTrunkHistoryResponse(_message.Message):
    __slots__ = ("trunk_id", "entries", "view_position")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    entries: _containers.RepeatedCompositeFieldContainer[_common_pb2.HistoryEntry]
    view_position: int
    def __init__(self, trunk_id: _Optional[str] = ..., entries: _Optional[_Iterable[_Union[_common_pb2.HistoryEntry, _Mapping]]] = ..., view_position: _Optional[int] = ...) -> None: ...

class ContactStatus(_message.Message):
    __slots__ = ("uri", "expires_at")
    URI_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    uri: str
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, uri: _Optional[str] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PeerStatus(_message.Message):
    __slots__ = ("address", "up", "rtt_ms", "since")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    address: str
    up: bool
    rtt_ms: float
    since: _timestamp_pb2.Timestamp
    def __init__(self, address: _Optional[str] = ..., up: _Optional[bool] = ..., rtt_ms: _Optional[float] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TrunkStatus(_message.Message):
    __slots__ = ("trunk_id", "trunk_name", "type", "enabled", "state", "since", "sip_code", "reason", "registrations_up", "registrations_wanted", "contacts", "peers", "active_inbound", "active_outbound", "call_limits", "agent_id", "observed_at", "alerts", "stale", "target")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SIP_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONS_UP_FIELD_NUMBER: _ClassVar[int]
    REGISTRATIONS_WANTED_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INBOUND_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_OUTBOUND_FIELD_NUMBER: _ClassVar[int]
    CALL_LIMITS_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    trunk_name: str
    type: str
    enabled: bool
    state: str
    since: _timestamp_pb2.Timestamp
    sip_code: int
    reason: str
    registrations_up: int
    registrations_wanted: int
    contacts: _containers.RepeatedCompositeFieldContainer[ContactStatus]
    peers: _containers.RepeatedCompositeFieldContainer[PeerStatus]
    active_inbound: int
    active_outbound: int
    call_limits: CallLimits
    agent_id: str
    observed_at: _timestamp_pb2.Timestamp
    alerts: _containers.RepeatedScalarFieldContainer[str]
    stale: bool
    target: str
    def __init__(self, trunk_id: _Optional[str] = ..., trunk_name: _Optional[str] = ..., type: _Optional[str] = ..., enabled: _Optional[bool] = ..., state: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sip_code: _Optional[int] = ..., reason: _Optional[str] = ..., registrations_up: _Optional[int] = ..., registrations_wanted: _Optional[int] = ..., contacts: _Optional[_Iterable[_Union[ContactStatus, _Mapping]]] = ..., peers: _Optional[_Iterable[_Union[PeerStatus, _Mapping]]] = ..., active_inbound: _Optional[int] = ..., active_outbound: _Optional[int] = ..., call_limits: _Optional[_Union[CallLimits, _Mapping]] = ..., agent_id: _Optional[str] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., alerts: _Optional[_Iterable[str]] = ..., stale: _Optional[bool] = ..., target: _Optional[str] = ...) -> None: ...

class ListTrunkStatusesResponse(_message.Message):
    __slots__ = ("statuses", "next_page_token", "total_size", "view_position")
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    VIEW_POSITION_FIELD_NUMBER: _ClassVar[int]
    statuses: _containers.RepeatedCompositeFieldContainer[TrunkStatus]
    next_page_token: str
    total_size: int
    view_position: int
    def __init__(self, statuses: _Optional[_Iterable[_Union[TrunkStatus, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total_size: _Optional[int] = ..., view_position: _Optional[int] = ...) -> None: ...

class ExportConfigurationRequest(_message.Message):
    __slots__ = ("tenant", "all_tenants", "with_secrets", "passphrase")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ALL_TENANTS_FIELD_NUMBER: _ClassVar[int]
    WITH_SECRETS_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    all_tenants: bool
    with_secrets: bool
    passphrase: str
    def __init__(self, tenant: _Optional[str] = ..., all_tenants: _Optional[bool] = ..., with_secrets: _Optional[bool] = ..., passphrase: _Optional[str] = ...) -> None: ...

class ConfigurationDocument(_message.Message):
    __slots__ = ("json",)
    JSON_FIELD_NUMBER: _ClassVar[int]
    json: str
    def __init__(self, json: _Optional[str] = ...) -> None: ...

class ImportConfigurationRequest(_message.Message):
    __slots__ = ("json", "passphrase", "dry_run", "options")
    JSON_FIELD_NUMBER: _ClassVar[int]
    PASSPHRASE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    json: str
    passphrase: str
    dry_run: bool
    options: _common_pb2.CommandOptions
    def __init__(self, json: _Optional[str] = ..., passphrase: _Optional[str] = ..., dry_run: _Optional[bool] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class ImportConfigurationResponse(_message.Message):
    __slots__ = ("changes", "kept", "applied", "position", "new_history_tenants", "replayed")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    NEW_HISTORY_TENANTS_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedScalarFieldContainer[str]
    kept: _containers.RepeatedScalarFieldContainer[str]
    applied: bool
    position: int
    new_history_tenants: _containers.RepeatedScalarFieldContainer[str]
    replayed: bool
    def __init__(self, changes: _Optional[_Iterable[str]] = ..., kept: _Optional[_Iterable[str]] = ..., applied: _Optional[bool] = ..., position: _Optional[int] = ..., new_history_tenants: _Optional[_Iterable[str]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class WatchTrunkStatusRequest(_message.Message):
    __slots__ = ("tenant", "trunks", "since_position")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TRUNKS_FIELD_NUMBER: _ClassVar[int]
    SINCE_POSITION_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    trunks: _containers.RepeatedScalarFieldContainer[str]
    since_position: int
    def __init__(self, tenant: _Optional[str] = ..., trunks: _Optional[_Iterable[str]] = ..., since_position: _Optional[int] = ...) -> None: ...

class TrunkStatusChange(_message.Message):
    __slots__ = ("position", "status", "current")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    position: int
    status: TrunkStatus
    current: bool
    def __init__(self, position: _Optional[int] = ..., status: _Optional[_Union[TrunkStatus, _Mapping]] = ..., current: _Optional[bool] = ...) -> None: ...

class CallAttempt(_message.Message):
    __slots__ = ("trunk_id", "trunk_name", "code", "reason")
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    trunk_id: str
    trunk_name: str
    code: int
    reason: str
    def __init__(self, trunk_id: _Optional[str] = ..., trunk_name: _Optional[str] = ..., code: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CallRecord(_message.Message):
    __slots__ = ("call_id", "tenant", "direction", "agent_id", "attempts", "number_received", "number_sent", "caller_received", "caller_sent", "trunk_id", "started_at", "answered_at", "ended_at", "final_code", "final_reason", "hangup_by")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    NUMBER_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    NUMBER_SENT_FIELD_NUMBER: _ClassVar[int]
    CALLER_RECEIVED_FIELD_NUMBER: _ClassVar[int]
    CALLER_SENT_FIELD_NUMBER: _ClassVar[int]
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    FINAL_CODE_FIELD_NUMBER: _ClassVar[int]
    FINAL_REASON_FIELD_NUMBER: _ClassVar[int]
    HANGUP_BY_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    tenant: str
    direction: str
    agent_id: str
    attempts: _containers.RepeatedCompositeFieldContainer[CallAttempt]
    number_received: str
    number_sent: str
    caller_received: str
    caller_sent: str
    trunk_id: str
    started_at: _timestamp_pb2.Timestamp
    answered_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    final_code: int
    final_reason: str
    hangup_by: str
    def __init__(self, call_id: _Optional[str] = ..., tenant: _Optional[str] = ..., direction: _Optional[str] = ..., agent_id: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[CallAttempt, _Mapping]]] = ..., number_received: _Optional[str] = ..., number_sent: _Optional[str] = ..., caller_received: _Optional[str] = ..., caller_sent: _Optional[str] = ..., trunk_id: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., final_code: _Optional[int] = ..., final_reason: _Optional[str] = ..., hangup_by: _Optional[str] = ...) -> None: ...

class ListCallsRequest(_message.Message):
    __slots__ = ("tenant", "page_size", "page_token", "direction", "trunk", "number", "start_time", "end_time", "final_code")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    TRUNK_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FINAL_CODE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    page_size: int
    page_token: str
    direction: str
    trunk: str
    number: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    final_code: int
    def __init__(self, tenant: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., direction: _Optional[str] = ..., trunk: _Optional[str] = ..., number: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., final_code: _Optional[int] = ...) -> None: ...

class ListCallsResponse(_message.Message):
    __slots__ = ("calls", "next_page_token")
    CALLS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    calls: _containers.RepeatedCompositeFieldContainer[CallRecord]
    next_page_token: str
    def __init__(self, calls: _Optional[_Iterable[_Union[CallRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
