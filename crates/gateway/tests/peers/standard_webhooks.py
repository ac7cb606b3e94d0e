"""Signs requests as a Standard Webhooks provider would, for the gateway's Rust verifier.

Reads {"timestamp": int, "messages": [{"id": str, "body": str}]} on stdin; writes the secret
and public key it made, in the formats providers hand out, and each message's signatures:
v1 by the official `standardwebhooks` package, v1a (which that package cannot make) by
`cryptography`'s Ed25519 over the spec's `{id}.{timestamp}.{body}`.
"""

import base64
import json
import secrets
import sys
from datetime import datetime, timezone

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook

request = json.load(sys.stdin)
timestamp = datetime.fromtimestamp(request["timestamp"], tz=timezone.utc)

secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
webhook = Webhook(secret)
signing_key = Ed25519PrivateKey.generate()
public_key = "whpk_" + base64.b64encode(
    signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()

signed = []
for message in request["messages"]:
    v1 = webhook.sign(message["id"], timestamp, message["body"])
    content = f"{message['id']}.{request['timestamp']}.{message['body']}".encode()
    v1a = "v1a," + base64.b64encode(signing_key.sign(content)).decode()
    # The package's own verifier must agree with what it signed, or this peer proves nothing.
    headers = {
        "webhook-id": message["id"],
        "webhook-timestamp": str(request["timestamp"]),
        "webhook-signature": v1,
    }
    webhook.verify(message["body"].encode(), headers, json_parse=False)
    signed.append({"v1": v1, "v1a": v1a})

json.dump({"secret": secret, "public_key": public_key, "signed": signed}, sys.stdout)
