from trunkplane.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Channel(_message.Message):
    __slots__ = ("name", "kind", "enabled", "url", "secret", "secret_set", "smtp_server", "username", "password", "password_set", "sender", "recipients", "id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_SET_FIELD_NUMBER: _ClassVar[int]
    SMTP_SERVER_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_SET_FIELD_NUMBER: _ClassVar[int]
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    enabled: bool
    url: str
    secret: str
    secret_set: bool
    smtp_server: str
    username: str
    password: str
    password_set: bool
    sender: str
    recipients: _containers.RepeatedScalarFieldContainer[str]
    id: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., enabled: _Optional[bool] = ..., url: _Optional[str] = ..., secret: _Optional[str] = ..., secret_set: _Optional[bool] = ..., smtp_server: _Optional[str] = ..., username: _Optional[str] = ..., password: _Optional[str] = ..., password_set: _Optional[bool] = ..., sender: _Optional[str] = ..., recipients: _Optional[_Iterable[str]] = ..., id: _Optional[str] = ...) -> None: ...

class PutChannelRequest(_message.Message):
    __slots__ = ("tenant", "channel", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    channel: Channel
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., channel: _Optional[_Union[Channel, _Mapping]] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class ListChannelsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListChannelsResponse(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedCompositeFieldContainer[Channel]
    def __init__(self, channels: _Optional[_Iterable[_Union[Channel, _Mapping]]] = ...) -> None: ...

class DeleteChannelRequest(_message.Message):
    __slots__ = ("tenant", "name", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class DeleteChannelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AlertRule(_message.Message):
    __slots__ = ("alert", "enabled", "attempts", "seconds", "share", "events")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    alert: str
    enabled: bool
    attempts: int
    seconds: int
    share: float
    events: int
    def __init__(self, alert: _Optional[str] = ..., enabled: _Optional[bool] = ..., attempts: _Optional[int] = ..., seconds: _Optional[int] = ..., share: _Optional[float] = ..., events: _Optional[int] = ...) -> None: ...

class AlertRules(_message.Message):
    __slots__ = ("rules", "reminder_seconds")
    RULES_FIELD_NUMBER: _ClassVar[int]
    REMINDER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    reminder_seconds: int
    def __init__(self, rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ..., reminder_seconds: _Optional[int] = ...) -> None: ...

class GetAlertRulesRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class UpdateAlertRulesRequest(_message.Message):
    __slots__ = ("tenant", "rules", "reminder_seconds", "options")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    REMINDER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    rules: _containers.RepeatedCompositeFieldContainer[AlertRule]
    reminder_seconds: int
    options: _common_pb2.CommandOptions
    def __init__(self, tenant: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[AlertRule, _Mapping]]] = ..., reminder_seconds: _Optional[int] = ..., options: _Optional[_Union[_common_pb2.CommandOptions, _Mapping]] = ...) -> None: ...

class ListNotificationsRequest(_message.Message):
    __slots__ = ("tenant", "page_size")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    page_size: int
    def __init__(self, tenant: _Optional[str] = ..., page_size: _Optional[int] = ...) -> None: ...

class DeliveryAttempt(_message.Message):
    __slots__ = ("attempt", "at", "outcome", "detail")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    at: str
    outcome: str
    detail: str
    def __init__(self, attempt: _Optional[int] = ..., at: _Optional[str] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("channel", "state", "attempts", "tries")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    TRIES_FIELD_NUMBER: _ClassVar[int]
    channel: str
    state: str
    attempts: int
    tries: _containers.RepeatedCompositeFieldContainer[DeliveryAttempt]
    def __init__(self, channel: _Optional[str] = ..., state: _Optional[str] = ..., attempts: _Optional[int] = ..., tries: _Optional[_Iterable[_Union[DeliveryAttempt, _Mapping]]] = ...) -> None: ...

class Notification(_message.Message):
    __slots__ = ("id", "type", "title", "trunk_name", "trunk_id", "created_at", "deliveries", "body_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    title: str
    trunk_name: str
    trunk_id: str
    created_at: str
    deliveries: _containers.RepeatedCompositeFieldContainer[Delivery]
    body_json: str
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., title: _Optional[str] = ..., trunk_name: _Optional[str] = ..., trunk_id: _Optional[str] = ..., created_at: _Optional[str] = ..., deliveries: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ..., body_json: _Optional[str] = ...) -> None: ...

class ListNotificationsResponse(_message.Message):
    __slots__ = ("notifications",)
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    notifications: _containers.RepeatedCompositeFieldContainer[Notification]
    def __init__(self, notifications: _Optional[_Iterable[_Union[Notification, _Mapping]]] = ...) -> None: ...

class GetCapacityReportRequest(_message.Message):
    __slots__ = ("tenant", "days")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    days: int
    def __init__(self, tenant: _Optional[str] = ..., days: _Optional[int] = ...) -> None: ...

class CapacityRow(_message.Message):
    __slots__ = ("trunk_name", "trunk_id", "day", "peak_calls", "limit", "advice")
    TRUNK_NAME_FIELD_NUMBER: _ClassVar[int]
    TRUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    PEAK_CALLS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ADVICE_FIELD_NUMBER: _ClassVar[int]
    trunk_name: str
    trunk_id: str
    day: str
    peak_calls: int
    limit: int
    advice: int
    def __init__(self, trunk_name: _Optional[str] = ..., trunk_id: _Optional[str] = ..., day: _Optional[str] = ..., peak_calls: _Optional[int] = ..., limit: _Optional[int] = ..., advice: _Optional[int] = ...) -> None: ...

class CapacityReport(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[CapacityRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[CapacityRow, _Mapping]]] = ...) -> None: ...
