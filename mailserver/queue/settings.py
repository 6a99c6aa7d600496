"""The outbound settings the queue reads: defined with the configuration schema
(``mailserver.config.outbound``) and re-exported here, so imports point queue -> config."""

from mailserver.config.outbound import DEFAULT_BACKOFF, SMART_HOST_TLS, OutboundSettings, SmartHost

__all__ = ["DEFAULT_BACKOFF", "SMART_HOST_TLS", "OutboundSettings", "SmartHost"]
