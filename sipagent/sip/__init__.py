"""Small, RFC-faithful SIP pieces for the agent; no telephony code lives outside."""
