"""The SIP agent: what it must hold on the wire (from the events), and the SIP engine."""
