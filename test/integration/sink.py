#!/usr/bin/env python3
"""sink.py - a small SMTP/LMTP server that stands in for the downstream in
Postern's integration tests. Python 3 standard library only.

    sink.py --port N --dir DIR [--lmtp] [--fail-rcpt ADDR:CODE ...]
            [--tempfail-all] [--tls-cert FILE --tls-key FILE [--implicit-tls]]

Listens on 127.0.0.1:N and writes every accepted message to DIR/<n>.eml
(n = 1, 2, ...): a first line "X-Sink-Envelope: from=<..> rcpt=<..>,<..>"
then the message as received, dot-unstuffed, CRLF kept. Each file is
written to DIR/.<n>.tmp and renamed, so a test that sees it sees it whole.

EHLO offers PIPELINING, 8BITMIME, SMTPUTF8 and SIZE (and STARTTLS with
--tls-cert/--tls-key); --lmtp speaks LMTP (LHLO, one reply per recipient
after DATA). --fail-rcpt ADDR:CODE answers CODE (e.g. 550 or 450) to
RCPT TO:<ADDR> with the enhanced code <class>.1.1; --tempfail-all answers
451 4.3.0 to every MAIL. --implicit-tls starts TLS at connect instead.
Prints "ready" once listening; exits on SIGTERM or SIGINT.
"""
import argparse
import os
import signal
import socket
import socketserver
import ssl
import sys
import threading

MAX_LINE = 65536


class Sink(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.count = 0
        self.fail = {}
        for spec in args.fail_rcpt:
            addr, sep, code = spec.rpartition(":")
            if not sep or not addr or len(code) != 3 or not code.isdigit():
                raise SystemExit("sink.py: --fail-rcpt wants ADDR:CODE, got %r" % spec)
            self.fail[addr.lower()] = code
        self.tls = None
        if args.tls_cert:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(args.tls_cert, args.tls_key)
        super().__init__(("127.0.0.1", args.port), Session)

    def store(self, mail_from, rcpts, data):
        with self.lock:
            self.count += 1
            n = self.count
        env = "X-Sink-Envelope: from=<%s> rcpt=%s\r\n" % (
            mail_from, ",".join("<%s>" % r for r in rcpts))
        tmp = os.path.join(self.args.dir, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(env.encode("utf-8", "surrogateescape"))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.args.dir, "%d.eml" % n))


def angle_addr(arg):
    """The address between < and > in 'FROM:<a@b> SIZE=10'."""
    start, end = arg.find("<"), arg.find(">")
    if start < 0 or end < start:
        return None
    return arg[start + 1:end]


class Session(socketserver.StreamRequestHandler):
    def setup(self):
        # Replies are small writes: without this each waits for a delayed ACK.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.server.args.implicit_tls:
            self.request = self.server.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def reply(self, *lines):
        out = "".join("%s%s\r\n" % (l[:3], ("-" if i < len(lines) - 1 else " ") + l[4:])
                      for i, l in enumerate(lines))
        self.wfile.write(out.encode())

    def readline(self):
        line = self.rfile.readline(MAX_LINE)
        if not line:
            raise EOFError
        return line

    def reset(self):
        self.mail_from = None
        self.rcpts = []

    def handle(self):
        srv = self.server
        args = srv.args
        self.reset()
        self.tls_active = args.implicit_tls
        self.reply("220 sink.test %s ready" % ("LMTP" if args.lmtp else "ESMTP"))
        try:
            while True:
                raw = self.readline()
                line = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
                verb, _, arg = line.partition(" ")
                verb = verb.upper()
                if verb in ("EHLO", "LHLO") and (verb == "LHLO") == args.lmtp:
                    self.reset()
                    ext = ["250 sink.test", "250 PIPELINING", "250 8BITMIME",
                           "250 SMTPUTF8", "250 SIZE 52428800"]
                    if srv.tls and not self.tls_active:
                        ext.append("250 STARTTLS")
                    self.reply(*ext)
                elif verb == "HELO" and not args.lmtp:
                    self.reset()
                    self.reply("250 sink.test")
                elif verb == "STARTTLS" and srv.tls and not self.tls_active:
                    self.reply("220 2.0.0 go ahead")
                    self.request = srv.tls.wrap_socket(self.request, server_side=True)
                    self.rfile = self.request.makefile("rb")
                    self.wfile = self.request.makefile("wb", buffering=0)
                    self.tls_active = True
                    self.reset()
                elif verb == "MAIL" and arg.upper().startswith("FROM:"):
                    addr = angle_addr(arg)
                    if args.tempfail_all:
                        self.reply("451 4.3.0 temporary failure (sink)")
                    elif addr is None or self.mail_from is not None:
                        self.reply("503 5.5.1 bad sequence or syntax")
                    else:
                        self.mail_from = addr
                        self.reply("250 2.1.0 ok")
                elif verb == "RCPT" and arg.upper().startswith("TO:"):
                    addr = angle_addr(arg)
                    if self.mail_from is None or addr is None:
                        self.reply("503 5.5.1 MAIL first")
                    elif addr.lower() in srv.fail:
                        code = srv.fail[addr.lower()]
                        self.reply("%s %s.1.1 <%s>: rejected by sink" % (code, code[0], addr))
                    else:
                        self.rcpts.append(addr)
                        self.reply("250 2.1.5 ok")
                elif verb == "DATA":
                    if not self.rcpts:
                        self.reply("503 5.5.1 no valid recipients")
                        continue
                    self.reply("354 end with <CRLF>.<CRLF>")
                    self.data()
                elif verb == "RSET":
                    self.reset()
                    self.reply("250 2.0.0 ok")
                elif verb == "NOOP":
                    self.reply("250 2.0.0 ok")
                elif verb == "QUIT":
                    self.reply("221 2.0.0 bye")
                    return
                else:
                    self.reply("500 5.5.2 command not recognized")
        except (EOFError, ConnectionError, ssl.SSLError, OSError):
            return

    def data(self):
        body = bytearray()
        while True:
            raw = self.readline()
            if raw in (b".\r\n", b".\n"):
                break
            body += raw[1:] if raw.startswith(b".") else raw
        self.server.store(self.mail_from, self.rcpts, bytes(body))
        # LMTP: one separate reply per recipient, not one multi-line reply
        for _ in self.rcpts if self.server.args.lmtp else [None]:
            self.reply("250 2.0.0 stored by sink")
        self.reset()


def main():
    p = argparse.ArgumentParser(description="SMTP/LMTP sink for integration tests")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--lmtp", action="store_true")
    p.add_argument("--fail-rcpt", nargs="+", action="extend", default=[], metavar="ADDR:CODE")
    p.add_argument("--tempfail-all", action="store_true")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--implicit-tls", action="store_true")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key) or (args.implicit_tls and not args.tls_cert):
        p.error("TLS needs both --tls-cert and --tls-key")
    os.makedirs(args.dir, exist_ok=True)

    server = Sink(args)

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


if __name__ == "__main__":
    sys.exit(main())
