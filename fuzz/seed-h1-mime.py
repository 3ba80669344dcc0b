#!/usr/bin/env python3
"""Seed corpora for h1_request_head, h1_chunked and mime_attachments (docs/fuzzing.md).

Writes into fuzz/corpus/<target>/ (git-ignored). Run from fuzz/: python3 seed-h1-mime.py
MIME seeds come from the ComposeMail requests in ../../shared/eas-samples (base64 in the XML
twins) plus a few hand-written shapes: nested message/rfc822, digest, LF-only, no boundary.
"""
import base64, os, re, glob

SAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "eas-samples")

def put(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

T = "/Microsoft-Server-ActiveSync?Cmd={}&User=u&DeviceId=DEV1&DeviceType=iPhone"
heads = [
    "POST " + T.format("Sync") + " HTTP/1.1\r\nHost: mail.example\r\nMS-ASProtocolVersion: 14.1\r\nX-MS-PolicyKey: 123\r\nContent-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: 13\r\nUser-Agent: Apple-iPhone/1\r\n\r\n",
    "POST " + T.format("SendMail") + " HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: keep-alive\r\n\r\n",
    "OPTIONS /Microsoft-Server-ActiveSync HTTP/1.1\r\nHost: gw\r\nAuthorization: Basic dTpw\r\n\r\n",
    "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "POST /Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n",
    "GET http://gw.example/owa/ HTTP/1.1\r\nHost: gw.example\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
]
for i, h in enumerate(heads):
    put("h1_request_head", f"head-{i}", b"\x01" + h.encode())
    put("h1_request_head", f"small-{i}", b"\x00" + h.encode())

bodies = [
    b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT",
    b"6 ; a = b;c=\"q \\\" x\"\r\nhello!\r\n0\r\n\r\n",
    b"1\r\na\r\n0\r\nX: \ttab\r\n\r\n",
    b"0\r\n\r\n",
    b"6;a\nb\r\nhello!\r\n0\r\n\r\n",
]
for i, b in enumerate(bodies):
    put("h1_chunked", f"whole-{i}", b"\x00" + b)
    put("h1_chunked", f"split-{i}", b"\x02\x03\x00\x09\x00" + b)

mimes = []
for f in glob.glob(os.path.join(SAMPLES, "*.xml")):
    for m in re.findall(r"<MIME>([^<]*)</MIME>", open(f, encoding="utf-8", errors="replace").read()):
        mimes.append(base64.b64decode(m))
mimes += [
    b"From: a@example.test\r\nSubject: outer\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hi</p>\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\nFrom: b@example.test\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n--inner\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--inner\r\nContent-Type: application/octet-stream; name*=UTF-8''r%C3%A9sum%C3%A9.docx\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n--inner--\r\n--outer\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--outer--\r\nepilogue\r\n",
    b"Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: x\n\nbody\n--d\nContent-Type: text/calendar; name=invite.ics\n\nBEGIN:VCALENDAR\n--d--\n",
    b"From: a@x\r\nContent-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n",
    b"Content-Type: multipart/mixed\r\n\r\n--x\r\nContent-Type: text/plain; name=a.txt\r\n\r\nx\r\n--x--\r\n",
    b"Content-Type: multipart/signed; boundary=s; protocol=\"application/pkcs7-signature\"\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\nsigned\r\n--s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n\r\nMIAG\r\n--s--\r\n",
]
for i, m in enumerate(mimes):
    for mode in (0, 1, 2, 8):
        put("mime_attachments", f"mime-{i}-{mode}", bytes([mode]) + m)
