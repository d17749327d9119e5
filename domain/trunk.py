"""The Trunk aggregate: a PBX's line to a SIP provider."""

from __future__ import annotations

from typing import ClassVar

from domain.model import Configured, Fields, Subject


class Trunk(Configured):
    KIND: ClassVar[str] = "trunk"
    SUBJECT = Subject.TRUNK

    class TrunkRenamed(Configured.SettingsChanged):
        name: str

    class TrunkTypeChanged(Configured.SettingsChanged):
        type: str

    class ServerChanged(Configured.SettingsChanged):
        host: str
        transport: str

    class CredentialsChanged(Configured.SettingsChanged):
        username: str
        password: str
        auth_id: str

    class RegistrationLimitChanged(Configured.SettingsChanged):
        max_registrations: int

    class FromIdentityChanged(Configured.SettingsChanged):
        from_user: str
        from_domain: str

    class PeerAddressesChanged(Configured.SettingsChanged):
        peer_addresses: list[str]

    class CodecsChanged(Configured.SettingsChanged):
        codecs: list[str]

    class CodecsReordered(CodecsChanged):
        pass

    class DtmfModeChanged(Configured.SettingsChanged):
        dtmf_mode: str

    class NatSettingsChanged(Configured.SettingsChanged):
        nat: dict[str, object]

    class CallLimitsChanged(Configured.SettingsChanged):
        call_limits: dict[str, int | None]

    class DescriptionChanged(Configured.SettingsChanged):
        description: str

    def refine_event(
        self, event_class: type[Configured.SettingsChanged], new: Fields
    ) -> type[Configured.SettingsChanged]:
        if event_class is Trunk.CodecsChanged and sorted(new["codecs"]) == sorted(
            self.settings["codecs"]
        ):
            return Trunk.CodecsReordered
        return event_class

    @property
    def name(self) -> str:
        return str(self.settings["name"])


Trunk.EVENT_FOR_FIELD = {
    "name": Trunk.TrunkRenamed,
    "type": Trunk.TrunkTypeChanged,
    "host": Trunk.ServerChanged,
    "transport": Trunk.ServerChanged,
    "username": Trunk.CredentialsChanged,
    "password": Trunk.CredentialsChanged,
    "auth_id": Trunk.CredentialsChanged,
    "max_registrations": Trunk.RegistrationLimitChanged,
    "from_user": Trunk.FromIdentityChanged,
    "from_domain": Trunk.FromIdentityChanged,
    "peer_addresses": Trunk.PeerAddressesChanged,
    "codecs": Trunk.CodecsChanged,
    "dtmf_mode": Trunk.DtmfModeChanged,
    "nat": Trunk.NatSettingsChanged,
    "call_limits": Trunk.CallLimitsChanged,
    "description": Trunk.DescriptionChanged,
}
