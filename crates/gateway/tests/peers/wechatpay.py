"""Sends callbacks as WeChat Pay API v3 does, for the gateway's Rust verifier.

Reads {"timestamp": int, "plaintexts": [str]} on stdin. Makes a platform RSA key with a
self-signed certificate and a merchant API v3 key, then for each plaintext: encrypts it with
AEAD_AES_256_GCM (ciphertext with the tag appended, base64) into a notification's `resource`,
and signs `{timestamp}\\n{nonce}\\n{body}\\n` with RSA PKCS#1 v1.5 SHA-256. Writes the
certificate (PEM), the API v3 key, and each request's headers and body.
"""

import base64
import datetime
import json
import secrets
import string
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

request = json.load(sys.stdin)
alphabet = string.ascii_letters + string.digits


def random_text(length):
    return "".join(secrets.choice(alphabet) for _ in range(length))


platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA test stand-in")])
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
certificate = (
    x509.CertificateBuilder()
    .subject_name(name)
    .issuer_name(name)
    .public_key(platform_key.public_key())
    .serial_number(x509.random_serial_number())
    .not_valid_before(start)
    .not_valid_after(start + datetime.timedelta(days=1825))
    .sign(platform_key, hashes.SHA256())
)
# WeChat Pay names the certificate by its serial number in uppercase hex.
serial = format(certificate.serial_number, "X")
api_v3_key = random_text(32)

requests = []
for plaintext in request["plaintexts"]:
    nonce = random_text(12)
    associated_data = "transaction"
    ciphertext = AESGCM(api_v3_key.encode()).encrypt(
        nonce.encode(), plaintext.encode(), associated_data.encode()
    )
    body = json.dumps(
        {
            "id": "EV-" + random_text(20),
            "create_time": "2025-11-24T16:00:00+08:00",
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(ciphertext).decode(),
                "associated_data": associated_data,
                "nonce": nonce,
            },
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )
    header_nonce = random_text(32)
    message = f"{request['timestamp']}\n{header_nonce}\n{body}\n".encode()
    signature = platform_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    requests.append(
        {
            "headers": {
                "Wechatpay-Timestamp": str(request["timestamp"]),
                "Wechatpay-Nonce": header_nonce,
                "Wechatpay-Signature": base64.b64encode(signature).decode(),
                "Wechatpay-Serial": serial,
                "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
            },
            "body": body,
        }
    )

json.dump(
    {
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode(),
        "api_v3_key": api_v3_key,
        "requests": requests,
    },
    sys.stdout,
)
