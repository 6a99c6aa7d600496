"""A loopback DNS server answering from a dict, over UDP and TCP (RFC 1035 §4.2).

Runs in daemon threads so it serves blocking and asyncio clients alike, and
keeps serving while a test waits on a subprocess.  Both transports share one
port (what a resolver configured with one address/port expects): the UDP
socket gets an ephemeral port from the kernel, the TCP socket binds the same
number.  A UDP answer larger than the client's limit is sent truncated (TC),
so big TXT records (RSA DKIM keys) exercise the TCP fallback.

Records: ``server.add("example.test", "MX", "10 mx.example.test.")`` —
rdata in zone-file text; TXT values are plain strings (split into 255-octet
character-strings here).  Unknown names get NXDOMAIN, known names without
the type get NOERROR with no answer (NODATA).

``dest_dns()`` starts one for the usual remote domain: ``dest.test`` has its
MX on 127.0.0.1, where a test's receiving SMTP server listens.
``txt_lookup()`` is dkimpy's ``dnsfunc`` answered by this server, for
verifying signatures against the keys a test published.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections import defaultdict
from typing import Any

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
from dns.rdtypes.ANY.TXT import TXT

TTL = 300


class DnsServer:
    """``start()`` binds 127.0.0.1 and returns ``(address, port)``; ``stop()`` closes."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.queries: list[tuple[str, str]] = []
        self.failing: set[str] = set()  # names answered with SERVFAIL (``fail``)
        #: Names whose answers carry the AD bit, as a validating resolver's would (DANE).
        self.secure: set[str] = set()
        self._lock = threading.Lock()
        self._udp: socketserver.UDPServer | None = None
        self._tcp: socketserver.TCPServer | None = None
        self.address = "127.0.0.1"
        self.port = 0
        self.ttl = TTL  # seconds, of every answer

    def add(self, name: str, rdtype: str, *values: str) -> None:
        """Add records; ``name`` without trailing dot."""
        name = name.lower().rstrip(".")
        with self._lock:
            for v in values:
                if rdtype == "TXT":
                    raw = v.encode()
                    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
                    rd: Any = TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)
                else:
                    rd = dns.rdata.from_text(dns.rdataclass.IN, rdtype, v)
                self.records[name][rdtype].append(rd)

    def remove(self, name: str, rdtype: str) -> None:
        """Drop the ``rdtype`` records of ``name`` (a record changed: ``add`` the new one)."""
        with self._lock:
            self.records[name.lower().rstrip(".")].pop(rdtype, None)

    def fail(self, name: str) -> None:
        """Answer every question about ``name`` with SERVFAIL (a broken zone)."""
        with self._lock:
            self.failing.add(name.lower().rstrip("."))

    def txt_lookup(self, name: bytes, timeout: int = 5) -> bytes:
        """dkimpy's ``dnsfunc``: the TXT record of ``name``, asked over the wire."""
        res = dns.resolver.Resolver(configure=False)
        res.nameservers = [self.address]
        res.port = self.port
        answer = res.resolve(name.decode(), "TXT")
        return b"".join(next(iter(answer)).strings)

    def answer(self, wire: bytes, limit: int | None) -> bytes:
        """The response to one query in wire format (``limit``: UDP size, None for TCP)."""
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        q = query.question[0]
        name = q.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(q.rdtype)
        with self._lock:
            self.queries.append((name, rdtype))
            known = name in self.records
            rds = list(self.records[name].get(rdtype, [])) if known else []
            failing = name in self.failing
            if name in self.secure:
                response.flags |= dns.flags.AD
        if failing:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif rds:
            rrset = dns.rrset.RRset(q.name, dns.rdataclass.IN, q.rdtype)
            for rd in rds:
                rrset.add(rd, self.ttl)
            response.answer.append(rrset)
        if limit is None:
            return response.to_wire()
        size = max(512, query.payload) if query.edns >= 0 else 512
        try:
            return response.to_wire(max_size=size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def start(self) -> tuple[str, int]:
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                try:
                    sock.sendto(server.answer(data, 512), self.client_address)
                except Exception:  # a garbled query: no answer, as real servers do
                    pass

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                while True:
                    head = _recv_exact(sock, 2)
                    if head is None:
                        return
                    data = _recv_exact(sock, struct.unpack(">H", head)[0])
                    if data is None:
                        return
                    out = server.answer(data, None)
                    sock.sendall(struct.pack(">H", len(out)) + out)

        for _ in range(20):
            udp = socketserver.ThreadingUDPServer((self.address, 0), Udp)
            port = udp.server_address[1]
            try:
                tcp = socketserver.ThreadingTCPServer((self.address, port), Tcp)
            except OSError:  # that TCP port is taken: take another UDP port
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        udp.daemon_threads = tcp.daemon_threads = True
        self._udp, self._tcp, self.port = udp, tcp, port
        for srv in (udp, tcp):
            threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
        return self.address, port

    def stop(self) -> None:
        for srv in (self._udp, self._tcp):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        self._udp = self._tcp = None


def dest_dns() -> DnsServer:
    """A started server where mail to any ``@dest.test`` goes to 127.0.0.1
    (the port is the queue's ``smtp_port``); ``stop()`` it when done."""
    server = DnsServer()
    server.start()
    server.add("dest.test", "MX", "10 mx.dest.test.")
    server.add("mx.dest.test", "A", "127.0.0.1")
    return server


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
